"""What the spool remembers after delivery: accepted events, and Stripe's reports handled.

``accepted`` keeps each event Stripe accepted (once per identifier) for the
history's length, for ``meterstream reconcile`` and for Stripe's later error
reports, which move accepted events to the dead letters. ``handled_events``
records which of Stripe's events (the reports, delivered by webhook) a
process took to handle, so that no two processes handle one.

Delivery does not write ``accepted`` itself: a row an event costs a few
microseconds each (a B-tree insert by identifier, one by timestamp), on the
delivery thread. It appends the batch to ``accepted_log`` instead, one row
holding the batch in one statement (:func:`log_accepted`), a transaction a
batch as before, and so as durable. :func:`catch_up` moves the logged
batches into ``accepted`` later: when delivery is idle, when the log passes
:data:`LOG_BOUND` batches, and before anything reads ``accepted``
(:func:`caught_up`), in this process or another one on the same file.

Each function takes the spool's connection, under the spool's lock; those
that write run in the caller's write transaction.
"""

from __future__ import annotations

import marshal
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Optional

from meterstream._record.events import RawEvent
from meterstream._spool.rows import decode_value, encode_value
from meterstream._spool.schema import Transaction

__all__ = [
    "HANDLED_KEPT",
    "LOG_BOUND",
    "accepted_between",
    "batch_blob",
    "bury_accepted",
    "catch_up",
    "caught_up",
    "claim_event",
    "log_accepted",
    "log_start",
    "logged_between",
    "known_dead",
    "pending_seqs",
    "prune",
    "prune_oldest",
    "release_event",
    "was_handled",
]

#: Handled Stripe events are remembered at least this long (the history's
#: length, when that is longer).
HANDLED_KEPT = 30 * 86400.0
#: Past this many batches in the log (at most 100 events each: 200,000
#: events), the batch that passed it catches up. Moving an event costs what
#: writing its row did (two B-tree inserts, 5-6 µs here): a reader that
#: finds the log this full waits about a second, that long holding the
#: write lock other processes' deliveries wait on (well within their
#: 10-second busy timeout), and the log takes 7-13 MB (35-65 bytes an
#: event). Delivery reaches it only when it never idles at a tick for that
#: many batches: several seconds of full load.
LOG_BOUND = 2_000
_INSERT_ACCEPTED = (
    "INSERT OR IGNORE INTO accepted "
    "(identifier, event_name, customer, value, ts, accepted_at) VALUES (?, ?, ?, ?, ?, ?)"
)


def log_accepted(
    db: sqlite3.Connection, events: Sequence[RawEvent], now: float, blob: Optional[bytes] = None
) -> int:
    """Append a batch Stripe accepted at *now* to the log: one row, one
    statement (its own transaction, outside one); returns the row's id.

    The row is :func:`batch_blob` of *events* (*blob*, when the caller made it
    already, outside its lock). Ids only grow (``AUTOINCREMENT``): the log is
    the rows from the oldest id (:func:`log_start`) to the newest.
    """
    if blob is None:
        blob = batch_blob(events)
    cursor = db.execute("INSERT INTO accepted_log (accepted_at, events) VALUES (?, ?)", (now, blob))
    return int(cursor.lastrowid or 0)


def batch_blob(events: Sequence[RawEvent]) -> bytes:
    """What the log keeps of a batch: the marshal (format 4) of the recorded
    tuples as they are, in one call; a Decimal value (which marshal does not
    take) as its text."""
    try:
        return marshal.dumps(list(events), 4)
    except ValueError:
        rows = [(e[0], e[1], encode_value(e[2]), e[3], e[4], dict(e[5]) if e[5] else None)
                for e in events]  # fmt: skip
        return marshal.dumps(rows, 4)


def log_start(db: sqlite3.Connection) -> int:
    """The id of the oldest batch in the log (of the next one, when it is empty)."""
    first = db.execute("SELECT min(id) FROM accepted_log").fetchone()[0]
    if first is not None:
        return int(first)
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'accepted_log'").fetchone()
    return 1 if row is None else int(row[0]) + 1


def catch_up(db: sqlite3.Connection) -> int:
    """Move the logged batches into ``accepted`` (once per identifier, the
    first acceptance kept, as Stripe counts them) and delete them from the
    log, in the caller's write transaction; returns how many events were moved.

    Two processes that catch up at once take turns on SQLite's write lock:
    the second finds the log empty.
    """
    last = db.execute("SELECT max(id) FROM accepted_log").fetchone()[0]
    if last is None:
        return 0
    moved = 0
    for accepted_at, blob in db.execute(
        "SELECT accepted_at, events FROM accepted_log WHERE id <= ? ORDER BY id", (last,)
    ).fetchall():
        batch = marshal.loads(blob)
        db.executemany(_INSERT_ACCEPTED, _rows(batch, accepted_at))
        moved += len(batch)
    db.execute("DELETE FROM accepted_log WHERE id <= ?", (last,))
    return moved


def _rows(batch: list[tuple[Any, ...]], accepted_at: float) -> Iterator[tuple[Any, ...]]:
    for name, customer, value, ts, identifier, _ in batch:
        yield identifier, name, customer, encode_value(value), ts, accepted_at


def caught_up(db: sqlite3.Connection) -> int:
    """What every reader of ``accepted`` calls first: catch up when the log
    holds anything (a cheap look when it does not), in the caller's write
    transaction or, outside one, in a write transaction of its own. Returns
    how many events were moved."""
    if db.execute("SELECT 1 FROM accepted_log LIMIT 1").fetchone() is None:
        return 0
    if db.in_transaction:
        return catch_up(db)
    with Transaction(db):
        return catch_up(db)


def logged_between(
    db: sqlite3.Connection, start: Optional[float], end: Optional[float]
) -> Iterator[tuple[str, str, Any, float, str]]:
    """The logged events not yet in ``accepted``, read without writing (for a
    read-only connection): ``(event_name, customer, value, ts, identifier)``
    with ``start <= ts < end`` (None: no bound), once per identifier."""
    seen: set[Any] = set()
    for (blob,) in db.execute("SELECT events FROM accepted_log ORDER BY id"):
        for name, customer, value, ts, identifier, _ in marshal.loads(blob):
            if (start is not None and ts < start) or (end is not None and ts >= end):
                continue
            if identifier in seen:
                continue
            seen.add(identifier)
            found = db.execute(
                "SELECT 1 FROM accepted WHERE identifier = ?", (identifier,)
            ).fetchone()
            if found is None:
                yield name, customer, value, ts, identifier


def prune(db: sqlite3.Connection, accepted_before: float, handled_before: float) -> int:
    """Forget accepted events older than *accepted_before*, and handled
    Stripe events older than *handled_before*; returns how many accepted went.

    The log is left as it is: what it holds past the history's length is
    forgotten the first time this runs after it was caught up.
    """
    pruned: int = db.execute("DELETE FROM accepted WHERE ts < ?", (accepted_before,)).rowcount
    db.execute("DELETE FROM handled_events WHERE handled_at < ?", (handled_before,))
    return pruned


def prune_oldest(db: sqlite3.Connection) -> int:
    """Forget the 500 oldest accepted events (the log caught up first, its
    events among them); returns how many went."""
    caught_up(db)
    gone: int = db.execute(
        "DELETE FROM accepted WHERE identifier IN "
        "(SELECT identifier FROM accepted ORDER BY ts LIMIT 500)"
    ).rowcount
    return gone


def accepted_between(
    db: sqlite3.Connection, start: float, end: float, event_name: Optional[str]
) -> list[tuple[str, str, Any, float, float]]:
    """Accepted events with ``start <= timestamp < end``, oldest first."""
    caught_up(db)
    query = (
        "SELECT event_name, customer, value, ts, accepted_at FROM accepted WHERE ts >= ? AND ts < ?"
    )
    args: tuple[Any, ...] = (start, end)
    if event_name is not None:
        query += " AND event_name = ?"
        args += (event_name,)
    rows = db.execute(query + " ORDER BY ts", args).fetchall()
    return [(n, c, decode_value(v), ts, at) for n, c, v, ts, at in rows]


def bury_accepted(
    db: sqlite3.Connection,
    identifiers: Iterable[str],
    reason: str,
    code: Optional[str],
    message: Optional[str],
    now: float,
) -> int:
    """Move the accepted events with these identifiers to the dead letters;
    returns how many were found."""
    caught_up(db)
    found = 0
    for ident in identifiers:
        moved: int = db.execute(
            "INSERT INTO dead (event_name, customer, value, ts, identifier, dimensions, "
            "attempts, reason, code, message, dead_at) "
            "SELECT event_name, customer, value, ts, identifier, NULL, 0, ?, ?, ?, ? "
            "FROM accepted WHERE identifier = ?",
            (reason, code, message, now, ident),
        ).rowcount
        if moved:
            db.execute("DELETE FROM accepted WHERE identifier = ?", (ident,))
            found += moved
    return found


def pending_seqs(db: sqlite3.Connection, identifiers: set[str]) -> list[int]:
    """The row numbers of pending events with these identifiers.

    Found by a scan: an index by identifier would cost every ``record()`` a
    second B-tree insert.
    """
    return [
        seq
        for seq, ident in db.execute("SELECT seq, identifier FROM pending")
        if ident in identifiers
    ]


def known_dead(db: sqlite3.Connection, identifiers: Iterable[str]) -> set[str]:
    """Which of *identifiers* are dead letters."""
    return {
        ident
        for ident in set(identifiers)
        if db.execute("SELECT 1 FROM dead WHERE identifier = ? LIMIT 1", (ident,)).fetchone()
    }


def claim_event(db: sqlite3.Connection, event_id: str, now: float) -> bool:
    """Take a Stripe event to handle: False when it was taken before. One statement."""
    taken: int = db.execute(
        "INSERT OR IGNORE INTO handled_events (event_id, handled_at) VALUES (?, ?)",
        (event_id, now),
    ).rowcount
    return taken == 1


def release_event(db: sqlite3.Connection, event_id: str) -> None:
    db.execute("DELETE FROM handled_events WHERE event_id = ?", (event_id,))


def was_handled(db: sqlite3.Connection, event_id: str) -> bool:
    row = db.execute("SELECT 1 FROM handled_events WHERE event_id = ?", (event_id,)).fetchone()
    return row is not None
