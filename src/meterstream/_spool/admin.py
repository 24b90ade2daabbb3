"""Inspecting and repairing a spool: what ``meterstream spool`` and ``stats()`` read.

:class:`SpoolAdmin` (a spool's ``spool.admin``) does what the record and
delivery paths never do: counts for ``status``, rows for ``export``, and
putting dead letters back (``replay``) or deleting events for good
(``purge``). It reads and writes the spool's tables with the spool's
connection, under the spool's lock, one short transaction each.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Optional

from meterstream._spool import journal
from meterstream._spool.history import caught_up
from meterstream._spool.schema import Transaction
from meterstream._spool.segment import list_segments
from meterstream._spool.size import disk_bytes

__all__ = ["SpoolAdmin", "SpoolStatus"]

#: Each pending row with its delivery attempts so far (claims hold them).
_PENDING_ROWS = (
    "SELECT p.seq, p.event_name, p.customer, p.value, p.ts, p.identifier, p.dimensions, "
    "coalesce(c.attempts, 0) FROM pending p LEFT JOIN claims c ON c.seq = p.seq"
)
_DEAD_ROWS = (
    "SELECT seq, event_name, customer, value, ts, identifier, dimensions, attempts, "
    "reason, code, message, dead_at FROM dead"
)


@dataclass
class SpoolStatus:
    """What ``meterstream spool status`` shows."""

    pending: int = 0
    claimed: int = 0
    dead: int = 0
    accepted: int = 0
    pending_by_event: dict[str, int] = field(default_factory=dict)
    dead_by_reason: dict[tuple[str, str], int] = field(default_factory=dict)
    oldest_pending: Optional[float] = None
    oldest_dead: Optional[float] = None
    bytes: int = 0


class SpoolAdmin:
    """Status, export, replay and purge of one spool.

    Made by the :class:`~meterstream._spool.spool.Spool` that owns the
    connection and its lock (again with the new ones in a forked child):
    this borrows them and keeps no state of its own.

    Args:
        db: the spool's connection.
        lock: the spool's lock, held around every statement.
        clock: the spool's wall clock.
        path: the spool's file (its size on disk is in the status).
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        lock: threading.Lock,
        clock: Callable[[], float],
        path: str,
    ) -> None:
        self._db = db
        self._lock = lock
        self._clock = clock
        self._path = path

    def _write(self) -> Transaction:
        return Transaction(self._db)

    def status(self, accepted: bool = True) -> SpoolStatus:
        """Counts by table, event name and reason, the oldest events, and bytes on disk.

        Args:
            accepted: count the accepted history too, catching it up first (a
                write); ``stats()``, which does not report it, reads only.
        """
        now = self._clock()
        out = SpoolStatus()
        with self._lock:
            if accepted:
                caught_up(self._db)  # the batches logged since: counted in ``accepted``
                out.accepted = self._db.execute("SELECT count(*) FROM accepted").fetchone()[0]
            for name, count, claimed in self._db.execute(
                "SELECT p.event_name, count(*), sum(c.owner != 0 AND c.lease >= ?) "
                "FROM pending p LEFT JOIN claims c ON c.seq = p.seq GROUP BY p.event_name",
                (now,),
            ):
                out.pending_by_event[name] = count
                out.pending += count
                out.claimed += claimed or 0
            for name, reason, count in self._db.execute(
                "SELECT event_name, reason, count(*) FROM dead GROUP BY event_name, reason"
            ):
                out.dead_by_reason[(name, reason)] = count
                out.dead += count
            out.oldest_pending = self._db.execute("SELECT min(ts) FROM pending").fetchone()[0]
            out.oldest_dead = self._db.execute("SELECT min(ts) FROM dead").fetchone()[0]
        # The events waiting in the journal (every process's), read as they are.
        for event in journal.inspect(self._path + ".journal"):
            out.pending += 1
            out.pending_by_event[event[0]] = out.pending_by_event.get(event[0], 0) + 1
            if out.oldest_pending is None or event[3] < out.oldest_pending:
                out.oldest_pending = event[3]
        out.bytes = disk_bytes(self._path) + journal_bytes(self._path + ".journal")
        return out

    def export(self, table: str = "pending") -> Iterator[dict[str, Any]]:
        """The events of *table* (``pending`` or ``dead``), oldest first, as dicts."""
        if table not in ("pending", "dead"):
            raise ValueError(f"table must be pending or dead, got {table!r}")
        if table == "dead":
            query = f"{_DEAD_ROWS} ORDER BY seq"
        else:
            query = f"{_PENDING_ROWS} ORDER BY p.seq"
        with self._lock:
            rows = self._db.execute(query).fetchall()
        if table == "pending":
            yield from _journal_rows(self._path + ".journal")
        for row in rows:
            out: dict[str, Any] = {
                "seq": row[0],
                "identifier": row[5],
                "event_name": row[1],
                "customer": row[2],
                "value": str(row[3]) if isinstance(row[3], str) else row[3],
                "timestamp": row[4],
                # Dimensions are stored as compact JSON, or NULL for none.
                "dimensions": json.loads(row[6]) if row[6] else None,
                "attempts": row[7],
            }
            if table == "dead":
                out.update(reason=row[8], code=row[9], message=row[10], dead_at=row[11])
            yield out

    def replay(self, *, reason: Optional[str] = None, event_name: Optional[str] = None) -> int:
        """Put dead letters back to be sent (all, or by reason and/or event name)."""
        where, args = _dead_filter(reason, event_name)
        with self._lock, self._write():
            self._db.execute(
                "INSERT INTO pending (event_name, customer, value, ts, identifier, dimensions) "
                f"SELECT event_name, customer, value, ts, identifier, dimensions FROM dead{where} "
                "ORDER BY seq",
                args,
            )
            return self._db.execute(f"DELETE FROM dead{where}", args).rowcount

    def purge(
        self, table: str, *, reason: Optional[str] = None, event_name: Optional[str] = None
    ) -> int:
        """Delete events from *table* (``pending`` or ``dead``) for good."""
        if table == "dead":
            where, args = _dead_filter(reason, event_name)
        elif table == "pending" and reason is None:
            where, args = (
                ("", ()) if event_name is None else (" WHERE event_name = ?", (event_name,))
            )
        else:
            raise ValueError("purge: table must be pending or dead (reason only for dead)")
        with self._lock, self._write():
            deleted: int = self._db.execute(f"DELETE FROM {table}{where}", args).rowcount
            self._db.execute("DELETE FROM claims WHERE seq NOT IN (SELECT seq FROM pending)")
        return deleted

    def export_accepted(self) -> Iterator[dict[str, Any]]:
        """The accepted history (what Stripe took, kept ``spool_history_days``),
        oldest first, as dicts."""
        with self._lock:
            caught_up(self._db)
            rows = self._db.execute(
                "SELECT identifier, event_name, customer, value, ts, accepted_at "
                "FROM accepted ORDER BY ts, identifier"
            ).fetchall()
        for row in rows:
            yield {
                "identifier": row[0],
                "event_name": row[1],
                "customer": row[2],
                "value": str(row[3]) if isinstance(row[3], str) else row[3],
                "timestamp": row[4],
                "accepted_at": row[5],
            }


def _dead_filter(reason: Optional[str], event_name: Optional[str]) -> tuple[str, tuple[str, ...]]:
    clauses, args = [], []
    if reason is not None:
        clauses.append("reason = ?")
        args.append(reason)
    if event_name is not None:
        clauses.append("event_name = ?")
        args.append(event_name)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(args)


def _journal_rows(directory: str) -> Iterator[dict[str, Any]]:
    """The journal's waiting events as ``export`` writes them (``seq`` is null: no row yet)."""
    for event in journal.inspect(directory):
        yield {
            "seq": None,
            "identifier": event[4],
            "event_name": event[0],
            "customer": event[1],
            "value": str(event[2]) if isinstance(event[2], Decimal) else event[2],
            "timestamp": event[3],
            "dimensions": dict(event[5]) if event[5] else None,
            "attempts": 0,
        }


def journal_bytes(directory: str) -> int:
    """Bytes of the journal's segments on disk."""
    total = 0
    for path in list_segments(directory):
        try:
            total += os.path.getsize(path)
        except OSError:
            pass
    return total
