"""The spool's checkpoints, off the record path.

In write-ahead-log mode SQLite copies the log back into the database file
(a checkpoint, with an fsync) when the log passes 1,000 pages, inside
whichever commit crossed the mark: left to itself, one ``record()`` in a few
hundred would wait some milliseconds for it, and the spool's connection, which
every recording thread shares, with it. The spool turns that off
(``wal_autocheckpoint=0``) and wakes a :class:`Checkpointer` instead, every
few hundred writes: a daemon thread with a connection of its own, which runs
a passive checkpoint (it never waits for, nor blocks, a writer) while the
record path goes on. Several processes on one spool each run one; SQLite
lets one checkpoint run at a time, and a passive one that finds another
running simply returns.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Optional

from ._internal import report_internal_error

__all__ = ["Checkpointer"]

#: Frames in the log past which a passive checkpoint is followed by a RESTART
#: one: under a steady stream of commits a passive checkpoint never catches
#: up, and the log starts again from its beginning only once one did. A
#: RESTART checkpoint makes writers wait (in SQLite's busy handler) while it
#: copies what the passive one left, a few milliseconds every few thousand
#: commits; the log stays at a few MiB.
RESTART_FRAMES = 2000
#: How long the checkpointer's connection waits for a writer or another checkpoint.
BUSY_TIMEOUT = 10.0


class Checkpointer:
    """Runs passive checkpoints of the spool at *path* on its own thread when woken."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._wake = threading.Event()
        self._closed = False
        self._thread: Optional[threading.Thread] = None
        self._start_lock = threading.Lock()
        #: Checkpoints run (for tests and benchmarks).
        self.runs = 0

    def wake(self) -> None:
        """Ask for a checkpoint soon (cheap: the record path calls it)."""
        if self._thread is None:
            self._start()
        self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None or self._closed:
                return
            thread = threading.Thread(
                target=self._run, name="meterstream-spool-checkpoint", daemon=True
            )
            thread.start()
            self._thread = thread

    def _run(self) -> None:
        db: Optional[sqlite3.Connection] = None
        try:
            db = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT
            )
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._closed:
                    return
                try:
                    _, log, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if log > RESTART_FRAMES:
                        db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                    self.runs += 1
                except sqlite3.Error as exc:  # busy, or a bad disk: the next wake tries again
                    report_internal_error(exc)
        except Exception as exc:
            report_internal_error(exc)
        finally:
            if db is not None:
                db.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread after a last checkpoint in progress, if any."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
