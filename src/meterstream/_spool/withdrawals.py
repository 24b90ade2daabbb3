"""Withdrawal requests: how a process asks another live one to withdraw an event.

An event waits in the journal of the process that recorded it, and only that
process reads its segments while it lives (no lock shared between processes
on the record path). Another process (a second worker, ``meterstream
cancel``) that finds the identifier in a live process's segment, past that
segment's cursor (:meth:`Journal.held_elsewhere`), writes a request into the
``withdraw_requests`` table of the shared SQLite file and waits for the
answer, at most :data:`ASK_DEADLINE` seconds.

Each process with the spool open looks for new requests every
:data:`POLL_INTERVAL` seconds (:class:`RequestWatcher`: one read of the
table's counter, and nothing more when it did not move) and answers those
for an event its journal holds: not taken yet, or given back after a failed
attempt, it is withdrawn (in ``withdrawn`` too, in the same transaction, so
that a process adopting the segment later skips it); taken and not settled,
the answer is ``in_flight``.

A request is ``standing`` when it comes from a destination that cannot
cancel a delivered event (Metronome): it stays open when the answer is
``in_flight`` or when none came by the deadline, and the holder withdraws
the event if it comes back to wait (a failed attempt), as does a process
adopting the segments of a holder that died. Otherwise (Stripe, where an
adjustment is queued instead) the requester revokes an unanswered request at
its deadline, in one statement that loses to an answer written first: the
holder then sends the event and the adjustment follows it.

States: NULL (open), ``withdrawn``, ``in_flight``, ``revoked``, ``left``
(a standing request whose event was sent or refused meanwhile).
"""

from __future__ import annotations

import sqlite3
from typing import Optional

__all__ = [
    "ASK_DEADLINE",
    "POLL_INTERVAL",
    "SCHEMA",
    "answer",
    "claim_for_skip",
    "latest",
    "open_requests",
    "open_identifiers",
    "prune",
    "request",
    "revoke",
    "state_of",
]

#: How long a requester waits for the holder's answer (seconds).
ASK_DEADLINE = 2.0
#: How often each process looks for requests (seconds).
POLL_INTERVAL = 0.1

SCHEMA = """
CREATE TABLE IF NOT EXISTS withdraw_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identifier TEXT NOT NULL,
    requested_at REAL NOT NULL,
    standing INTEGER NOT NULL DEFAULT 0,
    state TEXT,
    answered_at REAL
);
CREATE INDEX IF NOT EXISTS withdraw_requests_identifier ON withdraw_requests(identifier);
"""

#: A request still to act on: unanswered, or standing while its event is in flight.
_OPEN = "(state IS NULL OR (standing = 1 AND state = 'in_flight'))"


def request(db: sqlite3.Connection, identifier: str, standing: bool, now: float) -> int:
    """Write a request (in the caller's transaction); returns its id."""
    cursor = db.execute(
        "INSERT INTO withdraw_requests (identifier, requested_at, standing) VALUES (?, ?, ?)",
        (identifier, now, 1 if standing else 0),
    )
    rid = cursor.lastrowid
    assert rid is not None
    return rid


def state_of(db: sqlite3.Connection, rid: int) -> Optional[str]:
    row = db.execute("SELECT state FROM withdraw_requests WHERE id = ?", (rid,)).fetchone()
    return None if row is None else row[0]


def latest(db: sqlite3.Connection) -> int:
    """The newest request's id ever given (0: none): it only grows."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'withdraw_requests'").fetchone()
    return 0 if row is None else int(row[0])


def open_requests(db: sqlite3.Connection) -> list[tuple[int, str, bool, Optional[str]]]:
    """``(id, identifier, standing, state)`` of the requests to act on, oldest first."""
    rows = db.execute(
        f"SELECT id, identifier, standing, state FROM withdraw_requests WHERE {_OPEN} ORDER BY id"
    ).fetchall()
    return [(int(r[0]), str(r[1]), bool(r[2]), r[3]) for r in rows]


def open_identifiers(db: sqlite3.Connection) -> set[str]:
    """The identifiers of the requests to act on (read when adopting a dead process's segments)."""
    return {row[0] for row in db.execute(f"SELECT identifier FROM withdraw_requests WHERE {_OPEN}")}


def answer(
    db: sqlite3.Connection, rid: int, state: str, now: float, *, was: Optional[str] = None
) -> bool:
    """Answer request *rid* with *state* if it is still as *was* (None: open);
    False when it was answered or revoked before."""
    if was is None:
        condition = "state IS NULL"
        args: tuple[object, ...] = (state, now, rid)
    else:
        condition = "state = ?"
        args = (state, now, rid, was)
    changed: int = db.execute(
        f"UPDATE withdraw_requests SET state = ?, answered_at = ? WHERE id = ? AND {condition}",
        args,
    ).rowcount
    return changed == 1


def revoke(db: sqlite3.Connection, rid: int, now: float) -> bool:
    """The requester stops waiting: False when an answer was written first."""
    return answer(db, rid, "revoked", now)


def claim_for_skip(db: sqlite3.Connection, identifier: str, now: float) -> bool:
    """An adopted frame's identifier has an open request: answer it ``withdrawn``
    (every open one) and return True; False when none is open any more."""
    changed: int = db.execute(
        f"UPDATE withdraw_requests SET state = 'withdrawn', answered_at = ? "
        f"WHERE identifier = ? AND {_OPEN}",
        (now, identifier),
    ).rowcount
    return changed > 0


def prune(db: sqlite3.Connection, before: float) -> None:
    db.execute("DELETE FROM withdraw_requests WHERE requested_at < ?", (before,))
