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

import functools
import sqlite3
import threading
import time
import weakref
from typing import TYPE_CHECKING, Callable, Optional

from meterstream._internal import logger, report_internal_error
from meterstream._spool import journal_rows
from meterstream._spool.schema import Transaction

if TYPE_CHECKING:
    from meterstream._spool.journal import Journal

__all__ = [
    "ASK_DEADLINE",
    "POLL_INTERVAL",
    "SCHEMA",
    "RequestDesk",
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


class _Revoked(Exception):
    """The request was revoked (or answered) before this process withdrew the event."""


class RequestDesk:
    """One spool handle's side of the requests: it asks (:meth:`ask`), and it
    answers on a thread of its own (:meth:`answer`), with the spool's
    connection and lock.

    *remember_withdrawn* records a withdrawal this process made itself (and
    answers any open request for it).
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        lock: threading.Lock,
        clock: Callable[[], float],
        remember_withdrawn: Callable[[str], None],
    ) -> None:
        self._db = db
        self._lock = lock
        self._clock = clock
        self._remember_withdrawn = remember_withdrawn
        self._journal: Optional[Journal] = None
        #: Requests this process answered ``in_flight`` that stand: id -> identifier.
        self._standing_mine: dict[int, str] = {}
        self._seen = -1
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        with lock:
            db.executescript(SCHEMA)

    def start(self, journal: Journal) -> None:
        """Answer requests for what *journal* holds, every :data:`POLL_INTERVAL` seconds."""
        self._journal = journal
        self._thread = threading.Thread(
            target=_watch, args=(weakref.ref(self), self._stop), name="meterstream-withdraw"
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)

    # -- asking -------------------------------------------------------------------------

    def ask(
        self,
        identifier: str,
        standing: bool,
        journal: Journal,
        held_by_another: Callable[[str], bool],
    ) -> Optional[str]:
        """Ask the live process holding *identifier* to withdraw it; wait for
        its answer at most :data:`ASK_DEADLINE` seconds.

        Returns ``"withdrawn"``, ``"in_flight"`` (on its way, or no answer in
        time: it may still be sent) or None (it left that journal meanwhile,
        sent or refused, with no answer).
        """
        with self._lock, Transaction(self._db):
            rid = request(self._db, identifier, standing, self._clock())
        deadline = time.monotonic() + ASK_DEADLINE
        pause = threading.Event()  # never set: a bounded poll
        gone = False
        while True:
            with self._lock:
                state = state_of(self._db, rid)
            if state in ("withdrawn", "in_flight"):
                return state
            if journal.adopt_orphans():  # its holder died: the segment is ours now
                local = journal.withdraw(identifier, self._remember_withdrawn)
                if local is not None:
                    if local == "in_flight":
                        with self._lock, Transaction(self._db):
                            answer(self._db, rid, "in_flight", self._clock())
                    return local
            gone = not held_by_another(identifier)
            if gone or time.monotonic() >= deadline:
                break
            pause.wait(POLL_INTERVAL / 4)
        with self._lock, Transaction(self._db):
            if standing and not gone:
                state = state_of(self._db, rid)  # it stands
            elif revoke(self._db, rid, self._clock()):
                state = None
            else:
                state = state_of(self._db, rid)  # answered first
        if state in ("withdrawn", "in_flight"):
            return state
        return None if gone else "in_flight"

    # -- answering ----------------------------------------------------------------------

    def answer(self) -> None:
        """Answer the open requests for events this process's journal holds."""
        journal = self._journal
        if journal is None:
            return
        with self._lock:
            newest = latest(self._db)
        if newest == self._seen and not self._standing_mine:
            return
        with self._lock:
            rows = open_requests(self._db)
        self._seen = newest
        for rid, identifier, standing, state in rows:
            if state == "in_flight" and rid not in self._standing_mine:
                continue  # answered by this process or another: nothing new
            try:
                outcome = journal.withdraw(identifier, functools.partial(self._withdrawn, rid))
            except _Revoked:
                self._standing_mine.pop(rid, None)
                continue
            if outcome == "in_flight":
                if state is None:
                    with self._lock, Transaction(self._db):
                        answer(self._db, rid, "in_flight", self._clock())
                if standing:
                    self._standing_mine[rid] = identifier
            elif outcome is None and rid in self._standing_mine:
                # Sent (or refused) meanwhile: the request has nothing left to do.
                with self._lock, Transaction(self._db):
                    answer(self._db, rid, "left", self._clock(), was="in_flight")
                del self._standing_mine[rid]
            elif outcome == "withdrawn":
                self._standing_mine.pop(rid, None)

    def _withdrawn(self, rid: int, identifier: str) -> None:
        """The journal withdraws *identifier* for request *rid*: answer it, durably.

        Raises:
            _Revoked: the requester revoked it first (the event is then sent).
        """
        now = self._clock()
        with self._lock, Transaction(self._db):
            answered = answer(self._db, rid, "withdrawn", now) or answer(
                self._db, rid, "withdrawn", now, was="in_flight"
            )
            if not answered:
                raise _Revoked(identifier)
            claim_for_skip(self._db, identifier, now)
            journal_rows.withdraw(self._db, identifier, now)

    # -- adopting a dead holder's segments ------------------------------------------------

    def requested(self) -> set[str]:
        """The identifiers of the open requests (the journal reads them when adopting)."""
        with self._lock:
            return open_identifiers(self._db)

    def confirm_skip(self, identifier: str) -> bool:
        """An adopted frame whose identifier had an open request: withdraw it now
        if the request is still open (else it was revoked: deliver it)."""
        now = self._clock()
        with self._lock, Transaction(self._db):
            if not claim_for_skip(self._db, identifier, now):
                return False
            journal_rows.withdraw(self._db, identifier, now)
        return True


def _watch(ref: weakref.ReferenceType[RequestDesk], stop: threading.Event) -> None:
    """The thread answering requests: it holds its desk weakly, so that a spool
    dropped without close() is collected and the thread ends."""
    failures = 0
    while not stop.wait(POLL_INTERVAL):
        desk = ref()
        if desk is None:
            return
        try:
            desk.answer()
            failures = 0
        except sqlite3.Error as exc:  # busy, or closing: the next poll tries again
            failures += 1
            if failures == 50:
                logger.error("the spool could not read withdrawal requests: %s", exc)
        except Exception as exc:  # the thread must outlive any bug
            report_internal_error(exc)
        del desk
