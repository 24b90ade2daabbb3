"""What the spool remembers after delivery: accepted events, and Stripe's reports handled.

``accepted`` keeps each event Stripe accepted (once per identifier) for the
history's length, for ``meterstream reconcile`` and for Stripe's later error
reports, which move accepted events to the dead letters. ``handled_events``
records which of Stripe's events (the reports, delivered by webhook) a
process took to handle, so that no two processes handle one.

Each function takes the spool's connection, under the spool's lock; those
that write run in the caller's write transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any, Optional

from meterstream._spool.rows import decode_value

__all__ = [
    "HANDLED_KEPT",
    "accepted_between",
    "bury_accepted",
    "claim_event",
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


def prune(db: sqlite3.Connection, accepted_before: float, handled_before: float) -> int:
    """Forget accepted events older than *accepted_before*, and handled
    Stripe events older than *handled_before*; returns how many accepted went."""
    pruned: int = db.execute("DELETE FROM accepted WHERE ts < ?", (accepted_before,)).rowcount
    db.execute("DELETE FROM handled_events WHERE handled_at < ?", (handled_before,))
    return pruned


def prune_oldest(db: sqlite3.Connection) -> int:
    """Forget the 500 oldest accepted events; returns how many went."""
    gone: int = db.execute(
        "DELETE FROM accepted WHERE identifier IN "
        "(SELECT identifier FROM accepted ORDER BY ts LIMIT 500)"
    ).rowcount
    return gone


def accepted_between(
    db: sqlite3.Connection, start: float, end: float, event_name: Optional[str]
) -> list[tuple[str, str, Any, float, float]]:
    """Accepted events with ``start <= timestamp < end``, oldest first."""
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
