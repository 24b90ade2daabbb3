"""The processes sharing a spool file: who holds which claims, and who died.

Each process's handle registers an owner id (random, 62 bits) with its pid
and host in the ``owners`` table, and renews its leases and its ``seen``
time while it lives. The claims of a process that died are taken over by
another once their lease ran out, or at once when its pid is known to be
dead on this host (:func:`dead_owners`, then :func:`leave`).

Each function takes the spool's connection, under the spool's lock; those
that write run in the caller's write transaction.
"""

from __future__ import annotations

import os
import secrets
import socket
import sqlite3

__all__ = ["dead_owners", "free", "leave", "new_owner", "register", "renew"]


def new_owner() -> int:
    # secrets, not the random module: the application's random state is its
    # own (a seeded simulation, a test's), and a forked child draws anew.
    return secrets.randbits(62) + 1


def register(db: sqlite3.Connection, owner: int, now: float) -> None:
    """Say that *owner* is this process, on this host, alive at *now*."""
    db.execute(
        "INSERT OR REPLACE INTO owners (owner, pid, host, seen) VALUES (?, ?, ?, ?)",
        (owner, os.getpid(), socket.gethostname(), now),
    )


def renew(db: sqlite3.Connection, owner: int, now: float, lease: float) -> None:
    """Extend *owner*'s claims until *lease*, and mark it seen at *now*."""
    db.execute("UPDATE claims SET lease = ? WHERE owner = ?", (lease, owner))
    db.execute("UPDATE owners SET seen = ? WHERE owner = ?", (now, owner))


def dead_owners(db: sqlite3.Connection, owner: int) -> list[int]:
    """The other owners on this host whose process is gone."""
    rows = db.execute(
        "SELECT owner, pid FROM owners WHERE host = ? AND owner != ?",
        (socket.gethostname(), owner),
    ).fetchall()
    return [other for other, pid in rows if not _pid_alive(pid)]


def free(db: sqlite3.Connection, owner: int) -> int:
    """Free *owner*'s claims at once; returns how many."""
    freed: int = db.execute(
        "UPDATE claims SET owner = 0, lease = 0 WHERE owner = ?", (owner,)
    ).rowcount
    return freed


def leave(db: sqlite3.Connection, owner: int) -> int:
    """*owner* is gone: forget it and free its claims; returns how many were freed."""
    db.execute("DELETE FROM owners WHERE owner = ?", (owner,))
    return free(db, owner)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True
