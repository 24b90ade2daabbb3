"""Delivery's side of the spool: claim events, then ack, release or bury them.

A process *claims* the events it sends by writing its owner id and a lease
deadline on them (the ``claims`` table); an event leaves ``pending`` only
when Stripe accepted it (:func:`ack`: deleted, and kept in ``accepted`` with
a history) or refused it (:func:`bury`: moved to ``dead`` with the reason).
:func:`release` gives events back to wait before another try.

Each function takes the spool's connection and runs inside the caller's
write transaction (``BEGIN IMMEDIATE``), under the spool's lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Optional

from meterstream._record.events import RawEvent
from meterstream._spool.rows import ROW_COLUMNS, ROW_FROM, row_event

__all__ = [
    "IN_LIMIT",
    "DeadLetter",
    "SpooledBatch",
    "ack",
    "bury",
    "claim",
    "evict_oldest",
    "last_seq",
    "pending_upto",
    "release",
]

#: Row numbers one ``IN (...)`` statement takes (under SQLite's old limit of 999 parameters).
IN_LIMIT = 500


@dataclass
class SpooledBatch:
    """Events claimed from the spool: their row numbers and recorded tuples."""

    seqs: list[int]
    events: list[RawEvent]
    attempts: list[int]

    def __len__(self) -> int:
        return len(self.seqs)


@dataclass
class DeadLetter:
    """Why an event was moved to the dead-letter table."""

    seq: int
    reason: str
    code: Optional[str] = None
    message: Optional[str] = None


def claim(db: sqlite3.Connection, owner: int, now: float, lease: float, limit: int) -> SpooledBatch:
    """Claim for *owner*, until *lease*, up to *limit* of the oldest events
    nobody holds and that are due at *now*."""
    rows = db.execute(
        f"SELECT {ROW_COLUMNS}{ROW_FROM} WHERE c.seq IS NULL "
        "OR ((c.owner = 0 OR c.lease < ?) AND c.not_before <= ?) ORDER BY p.seq LIMIT ?",
        (now, now, limit),
    ).fetchall()
    for chunk in _chunks([row[0] for row in rows]):
        db.execute(
            "INSERT OR REPLACE INTO claims (seq, owner, lease, not_before, attempts) "
            f"SELECT p.seq, ?, ?, 0, coalesce(c.attempts, 0){ROW_FROM} "
            f"WHERE p.seq IN {_marks(len(chunk))}",
            (owner, lease, *chunk),
        )
    return SpooledBatch(
        [row[0] for row in rows], [row_event(row) for row in rows], [row[7] for row in rows]
    )


def ack(db: sqlite3.Connection, seqs: Iterable[int], now: float, keep: bool) -> int:
    """Delete accepted events from ``pending``; when *keep*, remember them in
    ``accepted`` (once per identifier, as Stripe counts them). Returns how
    many were deleted."""
    deleted = 0
    # One statement per table for the whole batch, not one per event.
    for chunk in _chunks(list(seqs)):
        marks = _marks(len(chunk))
        if keep:
            db.execute(
                "INSERT OR IGNORE INTO accepted "
                "(identifier, event_name, customer, value, ts, accepted_at) "
                "SELECT identifier, event_name, customer, value, ts, ? FROM pending "
                f"WHERE seq IN {marks} ORDER BY seq",
                (now, *chunk),
            )
        deleted += db.execute(f"DELETE FROM pending WHERE seq IN {marks}", chunk).rowcount
        db.execute(f"DELETE FROM claims WHERE seq IN {marks}", chunk)
    return deleted


def release(db: sqlite3.Connection, seqs: Iterable[int], not_before: float) -> None:
    """Free claimed events, to be claimed again from *not_before* on."""
    for chunk in _chunks(list(seqs)):
        db.execute(
            "UPDATE claims SET owner = 0, lease = 0, not_before = ?, "
            f"attempts = attempts + 1 WHERE seq IN {_marks(len(chunk))}",
            (not_before, *chunk),
        )


def bury(db: sqlite3.Connection, letters: Iterable[DeadLetter], now: float) -> int:
    """Move pending events to ``dead`` with their reasons; returns how many moved."""
    moved = 0
    for letter in letters:
        cursor = db.execute(
            "INSERT INTO dead (event_name, customer, value, ts, identifier, "
            "dimensions, attempts, reason, code, message, dead_at) "
            "SELECT p.event_name, p.customer, p.value, p.ts, p.identifier, "
            f"p.dimensions, coalesce(c.attempts, 0), ?, ?, ?, ?{ROW_FROM} WHERE p.seq = ?",
            (letter.reason, letter.code, letter.message, now, letter.seq),
        )
        if cursor.rowcount:
            db.execute("DELETE FROM pending WHERE seq = ?", (letter.seq,))
            db.execute("DELETE FROM claims WHERE seq = ?", (letter.seq,))
            moved += 1
    return moved


def evict_oldest(db: sqlite3.Connection, now: float, count: int) -> list[RawEvent]:
    """Delete the *count* oldest events nobody holds at *now*; returns them."""
    rows = db.execute(
        f"SELECT {ROW_COLUMNS}{ROW_FROM} WHERE c.seq IS NULL OR c.owner = 0 OR c.lease < ? "
        "ORDER BY p.seq LIMIT ?",
        (now, count),
    ).fetchall()
    for row in rows:
        db.execute("DELETE FROM pending WHERE seq = ?", (row[0],))
        db.execute("DELETE FROM claims WHERE seq = ?", (row[0],))
    return [row_event(row) for row in rows]


def last_seq(db: sqlite3.Connection) -> int:
    """The newest pending row number (0 for none)."""
    seq: Optional[int] = db.execute("SELECT max(seq) FROM pending").fetchone()[0]
    return seq or 0


def pending_upto(db: sqlite3.Connection, seq: Optional[int]) -> int:
    """How many events numbered up to *seq* (all, for None) are pending, anyone's."""
    if seq is None:
        count: int = db.execute("SELECT count(*) FROM pending").fetchone()[0]
    else:
        count = db.execute("SELECT count(*) FROM pending WHERE seq <= ?", (seq,)).fetchone()[0]
    return count


def _chunks(seqs: list[int]) -> Iterator[list[int]]:
    """*seqs* in pieces a statement's ``IN (?, ...)`` takes (SQLite's old
    default limit is 999 parameters)."""
    for start in range(0, len(seqs), IN_LIMIT):
        yield seqs[start : start + IN_LIMIT]


def _marks(count: int) -> str:
    """``(?, ?, ...)`` for *count* parameters."""
    return "(" + ",".join("?" * count) + ")"
