"""Cancellations in the spool: their own durable queue, and what they look up.

A cancellation is rare: each is one write transaction, never on the record
path's fast store. ``cancellations`` holds one row per identifier (a second
cancel of the same event is the first one): ``pending`` until sent, then
``sent`` (Stripe cancelled it), ``withdrawn`` (the event was still pending
and was deleted before it left) or ``failed`` (Stripe refused, or retries
ran out). A process that dies with a cancellation pending leaves it to the
next process that opens the spool.

The lookups read the tables the spool already keeps: ``pending`` (is the
event still waiting, or claimed by a sender?) and ``accepted`` (when did
Stripe accept it, for the 24-hour window), the latter caught up with the log
of accepted batches first (``history.caught_up``). Each function takes the spool's
connection, under the spool's lock; those that write run in the caller's
write transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any, Callable, NamedTuple, Optional

from meterstream._delivery.cancels import PendingCancel
from meterstream._spool.history import caught_up
from meterstream._spool.rows import decode_value
from meterstream._spool.schema import Transaction

__all__ = [
    "SCHEMA",
    "AcceptedEvent",
    "accepted_event",
    "accepted_for",
    "add",
    "billed_between",
    "cancelled_among",
    "cancelled_events",
    "counts",
    "due",
    "pending_state",
    "postpone",
    "settle",
    "take",
    "withdraw",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS cancellations (
    identifier TEXT PRIMARY KEY,
    event_name TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    state TEXT NOT NULL,
    not_before REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    settled_at REAL,
    message TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cancellations_state ON cancellations(state, not_before);
"""


class AcceptedEvent(NamedTuple):
    """An event of the spool's history of what Stripe accepted."""

    identifier: str
    event_name: str
    customer: str
    value: Any
    timestamp: float
    accepted_at: float


def accepted_event(db: sqlite3.Connection, identifier: str) -> Optional[AcceptedEvent]:
    """The accepted event with this identifier, if the history still holds it."""
    caught_up(db)
    row = db.execute(
        "SELECT identifier, event_name, customer, value, ts, accepted_at FROM accepted "
        "WHERE identifier = ?",
        (identifier,),
    ).fetchone()
    if row is None:
        return None
    return AcceptedEvent(row[0], row[1], row[2], decode_value(row[3]), row[4], row[5])


def accepted_for(
    db: sqlite3.Connection, customer: str, event_name: str, start: float, end: float
) -> list[AcceptedEvent]:
    """The accepted events of *customer* and *event_name* with ``start <= ts < end``,
    oldest first, less those already cancelled."""
    caught_up(db)
    rows = db.execute(
        "SELECT a.identifier, a.event_name, a.customer, a.value, a.ts, a.accepted_at "
        "FROM accepted a LEFT JOIN cancellations c ON c.identifier = a.identifier "
        "WHERE a.ts >= ? AND a.ts < ? AND a.event_name = ? AND a.customer = ? "
        "AND (c.state IS NULL OR c.state = 'failed') ORDER BY a.ts",
        (start, end, event_name, customer),
    ).fetchall()
    return [AcceptedEvent(r[0], r[1], r[2], decode_value(r[3]), r[4], r[5]) for r in rows]


def withdraw(db: sqlite3.Connection, identifier: str, now: float) -> Optional[str]:
    """Delete the pending event with this identifier before it leaves.

    Returns ``"withdrawn"`` (deleted), ``"in_flight"`` (a live sender claimed
    it: it may be arriving at Stripe now) or None (not pending). Found by a
    scan: an index by identifier would cost every ``record()`` a second
    B-tree insert, and cancellations are rare.
    """
    for (seq,) in db.execute("SELECT seq FROM pending WHERE identifier = ?", (identifier,)):
        claim = db.execute("SELECT lease FROM claims WHERE seq = ?", (seq,)).fetchone()
        if claim is not None and claim[0] > now:
            return "in_flight"
        db.execute("DELETE FROM claims WHERE seq = ?", (seq,))
        db.execute("DELETE FROM pending WHERE seq = ?", (seq,))
        return "withdrawn"
    return None


def pending_state(db: sqlite3.Connection, identifier: str, now: float) -> Optional[str]:
    """As :func:`withdraw` tells it, deleting nothing: ``"pending"`` (waiting to
    be sent), ``"in_flight"`` (a live sender claimed it) or None (not pending)."""
    for (seq,) in db.execute("SELECT seq FROM pending WHERE identifier = ?", (identifier,)):
        claim = db.execute("SELECT lease FROM claims WHERE seq = ?", (seq,)).fetchone()
        return "in_flight" if claim is not None and claim[0] > now else "pending"
    return None


def add(db: sqlite3.Connection, identifier: str, event_name: str, state: str, now: float) -> bool:
    """Record a cancellation (once per identifier); False when one was recorded before."""
    added: int = db.execute(
        "INSERT OR IGNORE INTO cancellations (identifier, event_name, recorded_at, state, "
        "settled_at) VALUES (?, ?, ?, ?, ?)",
        (identifier, event_name, now, state, None if state == "pending" else now),
    ).rowcount
    return added == 1


def due(db: sqlite3.Connection, now: float, limit: int = 100) -> list[PendingCancel]:
    """Pending cancellations that may be sent now, oldest first."""
    rows = db.execute(
        "SELECT identifier, event_name, recorded_at, attempts FROM cancellations "
        "WHERE state = 'pending' AND not_before <= ? ORDER BY recorded_at LIMIT ?",
        (now, limit),
    ).fetchall()
    return [PendingCancel(*row) for row in rows]


def postpone(db: sqlite3.Connection, identifier: str, until: float) -> None:
    """Try this cancellation again at *until* (another attempt counted)."""
    db.execute(
        "UPDATE cancellations SET not_before = ?, attempts = attempts + 1 "
        "WHERE identifier = ? AND state = 'pending'",
        (until, identifier),
    )


def take(db: sqlite3.Connection, identifier: str, now: float, hold: float) -> bool:
    """Take a due cancellation to send it, for *hold* seconds; False when another
    process took it first (or it was settled meanwhile)."""
    changed: int = db.execute(
        "UPDATE cancellations SET not_before = ? "
        "WHERE identifier = ? AND state = 'pending' AND not_before <= ?",
        (now + hold, identifier, now),
    ).rowcount
    return changed == 1


def settle(
    db: sqlite3.Connection, identifier: str, state: str, message: Optional[str], now: float
) -> bool:
    """A pending cancellation's outcome; False when it was settled before."""
    changed: int = db.execute(
        "UPDATE cancellations SET state = ?, settled_at = ?, message = ? "
        "WHERE identifier = ? AND state = 'pending'",
        (state, now, message, identifier),
    ).rowcount
    return changed == 1


def billed_between(
    db: sqlite3.Connection, start: float, end: float, event_name: Optional[str]
) -> list[tuple[str, str, Any, float, float]]:
    """As ``history.accepted_between``, less the events cancelled at Stripe:
    what the meter still counts."""
    caught_up(db)
    query = (
        "SELECT a.event_name, a.customer, a.value, a.ts, a.accepted_at FROM accepted a "
        "LEFT JOIN cancellations c ON c.identifier = a.identifier AND c.state = 'sent' "
        "WHERE a.ts >= ? AND a.ts < ? AND c.identifier IS NULL"
    )
    args: tuple[Any, ...] = (start, end)
    if event_name is not None:
        query += " AND a.event_name = ?"
        args += (event_name,)
    rows = db.execute(query + " ORDER BY a.ts", args).fetchall()
    return [(n, c, decode_value(v), ts, at) for n, c, v, ts, at in rows]


def cancelled_among(db: sqlite3.Connection, start: float, end: float) -> set[str]:
    """Identifiers of the accepted events with ``start <= ts < end`` that were
    cancelled at Stripe (for reconciliation: the meter no longer counts them)."""
    caught_up(db)
    return {
        ident
        for (ident,) in db.execute(
            "SELECT c.identifier FROM cancellations c JOIN accepted a "
            "ON a.identifier = c.identifier WHERE c.state = 'sent' AND a.ts >= ? AND a.ts < ?",
            (start, end),
        )
    }


def cancelled_events(
    db: sqlite3.Connection, start: float, end: float, event_name: Optional[str]
) -> list[tuple[str, str, float, float]]:
    """``(event_name, customer, ts, cancelled_at)`` of the accepted events with
    ``start <= ts < end`` cancelled at Stripe, *cancelled_at* being when Stripe
    accepted the adjustment (for reconciliation's grace)."""
    caught_up(db)
    query = (
        "SELECT a.event_name, a.customer, a.ts, c.settled_at FROM cancellations c "
        "JOIN accepted a ON a.identifier = c.identifier "
        "WHERE c.state = 'sent' AND a.ts >= ? AND a.ts < ?"
    )
    args: tuple[Any, ...] = (start, end)
    if event_name is not None:
        query += " AND a.event_name = ?"
        args += (event_name,)
    return [(n, c, ts, at or 0.0) for n, c, ts, at in db.execute(query, args)]


def counts(db: sqlite3.Connection) -> dict[str, int]:
    """How many cancellations are in each state."""
    found = dict(db.execute("SELECT state, count(*) FROM cancellations GROUP BY state").fetchall())
    return {state: int(found.get(state, 0)) for state in ("pending", "sent", "withdrawn", "failed")}


class SpoolCancellations:
    """The cancellations of one spool (``spool.cancellations``): a ``CancelStore``.

    Made by the :class:`~meterstream._spool.spool.Spool` that owns the
    connection and its lock (again with the new ones in a forked child):
    this borrows them, creates its table, and keeps no state of its own.
    Each write is its own transaction: cancellations are rare.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        lock: threading.Lock,
        clock: Callable[[], float],
        withdraw: Optional[Callable[[str, bool], Optional[str]]] = None,
        pending_state: Optional[Callable[[str], Optional[str]]] = None,
    ) -> None:
        self._db = db
        self._withdraw = withdraw
        self._pending_state = pending_state
        self._lock = lock
        self._clock = clock
        with lock:
            db.executescript(SCHEMA)

    #: Cancellations recorded here outlive the process (``CancelStore``).
    durable = True

    def withdraw(self, identifier: str, standing: bool = False) -> Optional[str]:
        """Delete the pending event *identifier* before it is sent: ``"withdrawn"``,
        ``"in_flight"`` (a live sender holds it) or None (not pending).

        *standing*: the destination cannot cancel a delivered event, so a request
        to another live process that holds it stays (``Spool.withdraw``)."""
        if self._withdraw is not None:
            # The spool's: its journal, these rows, then the other live processes.
            return self._withdraw(identifier, standing)
        with self._lock, Transaction(self._db):
            return withdraw(self._db, identifier, self._clock())

    def pending_state(self, identifier: str) -> Optional[str]:
        """Whether the event *identifier* waits to be sent: ``"pending"``,
        ``"in_flight"`` (a live sender holds it) or None (not pending)."""
        if self._pending_state is not None:
            return self._pending_state(identifier)  # the spool's: its journal, then these rows
        with self._lock:
            return pending_state(self._db, identifier, self._clock())

    def accepted_event(self, identifier: str) -> Optional[AcceptedEvent]:
        """The event *identifier* in the history of what Stripe accepted, with
        when it was accepted; None when the history does not hold it."""
        with self._lock:
            return accepted_event(self._db, identifier)

    def accepted_for(
        self, customer: str, event_name: str, start: float, end: float
    ) -> list[AcceptedEvent]:
        """Accepted, not cancelled, events of *customer* and *event_name* with
        ``start <= timestamp < end``, oldest first."""
        with self._lock:
            return accepted_for(self._db, customer, event_name, start, end)

    def billed_between(
        self, start: float, end: float, event_name: Optional[str] = None
    ) -> list[tuple[str, str, Any, float, float]]:
        """As ``Spool.accepted_between``, less the events cancelled at Stripe."""
        with self._lock:
            return billed_between(self._db, start, end, event_name)

    def cancelled_between(self, start: float, end: float) -> set[str]:
        """Identifiers of accepted events with ``start <= timestamp < end`` that
        were cancelled at Stripe."""
        with self._lock:
            return cancelled_among(self._db, start, end)

    def cancelled_events(
        self, start: float, end: float, event_name: Optional[str] = None
    ) -> list[tuple[str, str, float, float]]:
        """``(event_name, customer, timestamp, cancelled_at)`` of the accepted
        events with ``start <= timestamp < end`` that were cancelled at Stripe."""
        with self._lock:
            return cancelled_events(self._db, start, end, event_name)

    def cancellation_state(self, identifier: str) -> Optional[str]:
        """The state of the cancellation of *identifier*, None when there is none."""
        with self._lock:
            row = self._db.execute(
                "SELECT state FROM cancellations WHERE identifier = ?", (identifier,)
            ).fetchone()
        return None if row is None else str(row[0])

    def add_cancellation(self, identifier: str, event_name: str, state: str) -> bool:
        with self._lock, Transaction(self._db):
            return add(self._db, identifier, event_name, state, self._clock())

    def due_cancellations(self, limit: int) -> list[PendingCancel]:
        with self._lock:
            return due(self._db, self._clock(), limit)

    def postpone_cancellation(self, identifier: str, delay: float) -> None:
        with self._lock, Transaction(self._db):
            postpone(self._db, identifier, self._clock() + delay)

    def take_cancellation(self, identifier: str, hold: float) -> bool:
        with self._lock, Transaction(self._db):
            return take(self._db, identifier, self._clock(), hold)

    def settle_cancellation(self, identifier: str, state: str, message: Optional[str]) -> bool:
        with self._lock, Transaction(self._db):
            return settle(self._db, identifier, state, message, self._clock())

    def cancellations_pending(self) -> int:
        with self._lock:
            return counts(self._db)["pending"]
