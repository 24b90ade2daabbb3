"""The spool's checkpoints, off the record path.

In write-ahead-log mode SQLite copies the log back into the database file
(a checkpoint, with an fsync) when the log passes 1,000 pages, inside
whichever commit crossed the mark: left to itself, one ``record()`` in a few
hundred would wait some milliseconds for it, and the spool's connection, which
every recording thread shares, with it. The spool moves that mark far out
(:data:`SAFETY_NET_FRAMES`) and wakes a :class:`Checkpointer` instead, every
few hundred writes: a daemon thread with a connection of its own, which runs
a passive checkpoint (it never waits for, nor blocks, a writer) while the
record path goes on, and now and then a short RESTART one so the log starts
over. Several processes on one spool each run one; SQLite
lets one checkpoint run at a time, and a passive one that finds another
running simply returns.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from typing import Optional

from meterstream._internal import report_internal_error

__all__ = ["SAFETY_NET_FRAMES", "Checkpointer"]

#: Frames in the log past which a passive checkpoint is followed by a RESTART
#: one: under a steady stream of commits a passive checkpoint never catches
#: up, and the log starts again from its beginning only once one did. A
#: RESTART checkpoint holds writers up while it copies what the passive one
#: left, a few milliseconds every few thousand commits; the log stays at a
#: few MiB.
RESTART_FRAMES = 2000
#: How long a RESTART checkpoint may hold writers up waiting for a reader (a
#: backup tool or a shell may keep a snapshot open for minutes): past it, it
#: gives up, and is not tried again for RESTART_BACKOFF seconds.
RESTART_PATIENCE = 0.05
RESTART_BACKOFF = 5.0
#: The spool's own connection still checkpoints inside a commit past this many
#: frames: a safety net for a checkpoint thread starved of CPU (the log then
#: stays under about 80 MiB), never reached while the thread keeps up.
SAFETY_NET_FRAMES = 20_000


#: Held while a checkpoint thread is inside SQLite. A fork waits for it, so a
#: child never starts with SQLite's process-wide mutexes held by a thread it
#: does not have (its first SQLite call would then wait forever).
_IN_SQLITE = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_IN_SQLITE.acquire,
        after_in_parent=_IN_SQLITE.release,
        after_in_child=_IN_SQLITE.release,
    )


class _State:
    """What the checkpoint thread shares with its :class:`Checkpointer`.

    The thread holds this, not the Checkpointer: a spool dropped without
    ``close()`` is collected, and its finalizer ends the thread.
    """

    __slots__ = ("closed", "path", "runs", "wake")

    def __init__(self, path: str) -> None:
        self.path = path
        self.wake = threading.Event()
        self.closed = False
        self.runs = 0

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class Checkpointer:
    """Runs checkpoints of the spool at *path* on its own thread when woken."""

    def __init__(self, path: str) -> None:
        self._state = _State(path)
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()
        weakref.finalize(self, self._state.close)

    @property
    def runs(self) -> int:
        """Checkpoints run (for tests and benchmarks)."""
        return self._state.runs

    def wake(self) -> None:
        """Ask for a checkpoint soon (cheap: the record path calls it)."""
        if self._thread is None:
            self._start()
        self._state.wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._state.closed:
                return
            thread = threading.Thread(
                target=_run, args=(self._state,), name="meterstream-spool-checkpoint", daemon=True
            )
            thread.start()
            self._thread = thread

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread after a checkpoint in progress, if any."""
        self._state.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


def _run(state: _State) -> None:
    db: Optional[sqlite3.Connection] = None
    restart_after = 0.0
    try:
        with _IN_SQLITE:
            db = sqlite3.connect(
                state.path, isolation_level=None, check_same_thread=False, timeout=RESTART_PATIENCE
            )
        while True:
            state.wake.wait()
            state.wake.clear()
            if state.closed:
                return
            try:
                with _IN_SQLITE:
                    _, log, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if log > RESTART_FRAMES and time.monotonic() >= restart_after:
                        busy, _, _ = db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                        if busy:  # a reader holds an old snapshot: leave the writers be
                            restart_after = time.monotonic() + RESTART_BACKOFF
                state.runs += 1
            except sqlite3.Error as exc:  # busy, or a bad disk: the next wake tries again
                report_internal_error(exc)
    except Exception as exc:
        report_internal_error(exc)
    finally:
        if db is not None:
            with _IN_SQLITE:
                db.close()
