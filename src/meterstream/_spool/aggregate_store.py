"""The aggregation of uses stored in a spool, as SQL: one write transaction, exactly once.

:meth:`meterstream._spool.spool.Spool.aggregate_due` runs :func:`aggregate_in_transaction`
inside ``BEGIN IMMEDIATE``: read the uses of ended windows, sum them exactly
(:mod:`meterstream._aggregate.arithmetic`'s arithmetic and 15-digit split), insert the aggregated
events into ``pending``, delete the uses. Before the commit nothing changed;
after it the events wait with their identifiers fixed.

Identifiers: each aggregation transaction draws a fresh random aggregate id (80 bits),
and takes a number from the spool's count of aggregations. An aggregated event's
identifier is a function of the aggregate id, that number, the key, the window
and the split part, and is stored with the event when the transaction
commits: retries send it as stored. A use that arrives after its window was
aggregated (another process's late write, a clock a little behind) is billed by
a later aggregation under a different identifier, never dropped by Stripe's
identifier dedupe as a repeat of the first, and so are the aggregations of a copy
of the spool file (a restored backup, a cloned volume), which would repeat
any id kept in the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Optional, Union

from meterstream._aggregate.arithmetic import (
    FLOAT_HIGH,
    FLOAT_LOW,
    Key,
    Number,
    add_into,
    dimensions_key,
    emit,
    exact_decimal,
    new_aggregate_id,
)
from meterstream._record.events import RawEvent
from meterstream._spool.rows import (
    INSERT_PENDING,
    decode_dimensions,
    encode_dimensions,
    encode_value,
)

__all__ = [
    "AGGREGATE_CHUNK",
    "INSERT_USE",
    "count_uses",
    "aggregate_in_transaction",
    "oldest_use_end",
    "stored_value",
]

#: Uses one aggregation transaction takes at most (about 0.1 s of the write lock
#: here): more wait for the next transaction, and make events of their own.
AGGREGATE_CHUNK = 50_000

INSERT_USE = (
    "INSERT INTO uses (event_name, customer, value, window_start, window_end, dimensions) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def stored_value(value: Any) -> Optional[Union[int, str]]:
    """A checked use's value as the ``uses`` table keeps it, exactly; None when
    it cannot be aggregated exactly (the caller records it unaggregated)."""
    kind = type(value)
    if kind is int:
        stored: Union[int, str] = encode_value(value)
        return stored
    if kind is float:
        # As the unaggregated path writes it on the wire: 15 significant digits.
        if FLOAT_LOW <= abs(value) < FLOAT_HIGH:
            return format(value, ".15g")
        return 0 if value == 0 else None
    number = exact_decimal(value)
    return None if number is None else str(number)


def _next_aggregate(db: sqlite3.Connection) -> tuple[str, int]:
    """A fresh aggregate id and this aggregation's number (inside the write transaction)."""
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('folds', 0)")
    db.execute("UPDATE meta SET value = value + 1 WHERE key = 'folds'")
    number = db.execute("SELECT value FROM meta WHERE key = 'folds'").fetchone()[0]
    return new_aggregate_id(), int(number)


def _read_uses(db: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> dict[Any, Number]:
    """The exact sum of the selected uses, per window and key."""
    sums: dict[tuple[float, Key], Number] = {}
    keys: dict[tuple[str, str, Optional[str]], Key] = {}
    for name, customer, value, start, dims in db.execute(
        f"SELECT event_name, customer, value, window_start, dimensions FROM uses{where}", args
    ):
        key = keys.get((name, customer, dims))
        if key is None:
            key = keys[(name, customer, dims)] = (
                name,
                customer,
                dimensions_key(decode_dimensions(dims)),
            )
        number: Number = value if type(value) is int else Decimal(value)
        add_into(sums, float(start), {key: number})
    return sums


def _insert_aggregated(db: sqlite3.Connection, events: Iterable[RawEvent]) -> None:
    db.executemany(
        INSERT_PENDING,
        [
            (name, customer, encode_value(value), ts, ident, encode_dimensions(dims))
            for name, customer, value, ts, ident, dims in events
        ],
    )


def _delete_uses(db: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> None:
    db.execute(f"DELETE FROM uses{where}", args)


def aggregate_in_transaction(
    db: sqlite3.Connection, now: float, force: bool, limit: int = AGGREGATE_CHUNK
) -> tuple[int, bool]:
    """Aggregate up to *limit* of the oldest due uses; called inside a ``BEGIN
    IMMEDIATE`` transaction.

    Nobody else writes until the commit, so the rows deleted are exactly the
    rows read. Returns how many events were made, and whether due uses are
    left (past *limit*: for another transaction, so that recording is not
    held up behind one long aggregation).
    """
    where, args = ("", ()) if force else (" WHERE window_end <= ?", (now,))
    if db.execute(f"SELECT 1 FROM uses{where} LIMIT 1", args).fetchone() is None:
        return 0, False
    last = db.execute(
        f"SELECT seq FROM uses{where} ORDER BY seq LIMIT 1 OFFSET ?", (*args, limit)
    ).fetchone()
    more = last is not None
    if more:
        where = (where + " AND" if where else " WHERE") + " seq < ?"
        args = (*args, last[0])
    sums = _read_uses(db, where, args)
    aggregate_id, number = _next_aggregate(db)
    events = emit(sums, aggregate_id, number)
    _insert_aggregated(db, events)
    _delete_uses(db, where, args)
    return len(events), more


def count_uses(db: sqlite3.Connection) -> int:
    """Uses waiting to be aggregated (every process's)."""
    count: int = db.execute("SELECT count(*) FROM uses").fetchone()[0]
    return count


def oldest_use_end(db: sqlite3.Connection) -> Optional[float]:
    """When the window of the oldest waiting use ends (None: no use waits)."""
    row = db.execute("SELECT window_end FROM uses ORDER BY seq LIMIT 1").fetchone()
    return None if row is None else float(row[0])
