"""What a spool holds, totalled: accepted by Stripe, pending, dead letters.

``meterstream usage`` reads through :func:`read_usage` only. It opens the
file read-only (a second connection, no owner registered, nothing written),
so it is safe beside a running process. Where each kind of event lives is
said once, in ``_SOURCES``: the ``accepted`` history (with the batches
logged and not yet moved into it, read as they are), the ``pending`` queue
(with the ``uses`` not yet aggregated into it), the events waiting in the
journal beside the file (every process's, read as they are, less those
withdrawn) and the ``dead`` letters: what was recorded, whether Stripe has
it yet or not.

Values are summed exactly: integers and floats by SQLite, values stored as
decimal text (Decimals, and integers too large for SQLite) as Decimals.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Optional, Union

from meterstream._spool import journal
from meterstream._spool.history import logged_between
from meterstream.errors import ConfigurationError

__all__ = ["GROUPINGS", "KINDS", "UsageRow", "read_usage"]

#: How rows can be grouped: the command's ``--by``.
GROUPINGS = ("customer", "event", "hour", "day")
#: The kinds of event, in the order shown.
KINDS = ("accepted", "pending", "dead")

# (kind, table, the column holding the event's time).
_SOURCES = (
    ("accepted", "accepted", "ts"),
    ("pending", "pending", "ts"),
    ("pending", "uses", "window_start"),
    ("dead", "dead", "ts"),
)

Number = Union[int, float, Decimal]


@dataclass
class UsageRow:
    """One group's totals: its key, then per kind the events and their summed value."""

    event_name: str
    customer: Optional[str] = None
    start: Optional[int] = None  # the hour or day (Unix seconds, UTC) with --by hour|day
    events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    values: dict[str, Number] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))


def _group(by: str, time_column: str) -> tuple[str, str]:
    """The SELECT expressions of the group's key: (customer, start)."""
    if by == "customer":
        return "customer", "NULL"
    if by == "event":
        return "NULL", "NULL"
    size = 3600 if by == "hour" else 86400
    return "NULL", f"CAST({time_column} / {size} AS INTEGER) * {size}"


def _add(a: Number, b: Any) -> Number:
    if isinstance(b, str):
        b = Decimal(b)
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return Decimal(a if not isinstance(a, float) else repr(a)) + Decimal(
            b if not isinstance(b, float) else repr(b)
        )
    result: Number = a + b
    return result


def read_usage(
    path: str,
    *,
    by: str = "customer",
    customer: Optional[list[str]] = None,
    since: Optional[float] = None,
    until: Optional[float] = None,
) -> list[UsageRow]:
    """Totals of the spool at *path* per group, accepted, pending and dead side by side.

    Args:
        path: the spool file.
        by: ``customer`` (per customer and event name), ``event``, ``hour`` or
            ``day`` (per UTC window of the events' timestamps, and event name).
        customer: only these customers.
        since: only events at or after this time (Unix seconds).
        until: only events before this time.

    Returns:
        The rows, sorted by their key.

    Raises:
        ConfigurationError: no spool at *path*, or not one this build reads.
    """
    if by not in GROUPINGS:
        raise ValueError(f"by: expected one of {', '.join(GROUPINGS)}, got {by!r}")
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise ConfigurationError(f"spool_path: there is no spool at {full!r}")
    try:
        db = sqlite3.connect(f"file:{full}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ConfigurationError(f"spool_path: cannot open {full!r}: {exc}") from None
    try:
        return _read(db, full, by, customer, since, until)
    finally:
        db.close()


def _read(
    db: sqlite3.Connection,
    path: str,
    by: str,
    customers: Optional[list[str]],
    since: Optional[float],
    until: Optional[float],
) -> list[UsageRow]:
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise ConfigurationError(f"spool_path: {path!r} is not a spool ({exc})") from None
    if not {"accepted", "pending", "dead"} <= tables:
        raise ConfigurationError(f"spool_path: {path!r} is not a spool (no spool tables)")
    rows: dict[tuple[str, Optional[str], Optional[int]], UsageRow] = {}
    for kind, table, column in _SOURCES:
        if table not in tables:
            continue
        who, start = _group(by, column)
        where: list[str] = []
        args: list[Any] = []
        if customers:
            where.append(f"customer IN ({', '.join('?' * len(customers))})")
            args.extend(customers)
        if since is not None:
            where.append(f"{column} >= ?")
            args.append(since)
        if until is not None:
            where.append(f"{column} < ?")
            args.append(until)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        # Text values (exact decimals) are summed here, numbers by SQLite.
        query = (
            f"SELECT event_name, {who}, {start}, typeof(value) = 'text', count(*), "
            f"CASE WHEN typeof(value) = 'text' THEN group_concat(value, ' ') ELSE sum(value) END "
            f"FROM {table}{clause} GROUP BY 1, 2, 3, 4"
        )
        try:
            found = db.execute(query, args).fetchall()
        except sqlite3.OperationalError as exc:  # an integer sum past 64 bits
            if "overflow" not in str(exc):
                raise
            found = _rows_one_by_one(db, table, who, start, clause, args)
        for name, who_value, start_value, is_text, count, total in found:
            key = (name, who_value, start_value)
            row = rows.get(key)
            if row is None:
                row = rows[key] = UsageRow(name, who_value, start_value)
            row.events[kind] += count
            if is_text:
                for text in total.split(" "):
                    row.values[kind] = _add(row.values[kind], text)
            else:
                row.values[kind] = _add(row.values[kind], total or 0)
    if "accepted_log" in tables:
        _add_log(rows, db, by, customers, since, until)
    withdrawn: set[str] = set()
    if "withdrawn" in tables:
        withdrawn = {r[0] for r in db.execute("SELECT identifier FROM withdrawn")}
    _add_journal(rows, path + ".journal", by, customers, since, until, withdrawn)
    return [rows[k] for k in sorted(rows, key=lambda k: (k[2] or 0, k[1] or "", k[0]))]


def _key(by: str, name: str, who: str, ts: float) -> tuple[str, Optional[str], Optional[int]]:
    size = 3600 if by == "hour" else 86400
    return (
        name,
        who if by == "customer" else None,
        int(ts // size) * size if by in ("hour", "day") else None,
    )


def _add_log(
    rows: dict[tuple[str, Optional[str], Optional[int]], UsageRow],
    db: sqlite3.Connection,
    by: str,
    customers: Optional[list[str]],
    since: Optional[float],
    until: Optional[float],
) -> None:
    """Count the accepted batches logged, not yet moved into ``accepted``, as
    accepted: read as they are, since this connection writes nothing."""
    wanted = set(customers) if customers else None
    for name, who, value, ts, _ in logged_between(db, since, until):
        if wanted is not None and who not in wanted:
            continue
        _count(rows, _key(by, name, who, ts), "accepted", value)


def _add_journal(
    rows: dict[tuple[str, Optional[str], Optional[int]], UsageRow],
    directory: str,
    by: str,
    customers: Optional[list[str]],
    since: Optional[float],
    until: Optional[float],
    withdrawn: set[str],
) -> None:
    """Count the journal's waiting events as pending (read without locking or writing)."""
    if not os.path.isdir(directory):
        return
    wanted = set(customers) if customers else None
    for name, who, value, ts, identifier, _ in journal.inspect(directory):
        if wanted is not None and who not in wanted:
            continue
        if (since is not None and ts < since) or (until is not None and ts >= until):
            continue
        if identifier in withdrawn:
            continue
        _count(rows, _key(by, name, who, ts), "pending", value)


def _count(
    rows: dict[tuple[str, Optional[str], Optional[int]], UsageRow],
    key: tuple[str, Optional[str], Optional[int]],
    column: str,
    value: Any,
) -> None:
    """One more event of *value* under *column* (``accepted``, ``pending``) in *key*'s row."""
    row = rows.get(key)
    if row is None:
        row = rows[key] = UsageRow(*key)
    row.events[column] += 1
    row.values[column] = _add(row.values[column], value)


def _rows_one_by_one(
    db: sqlite3.Connection, table: str, who: str, start: str, clause: str, args: list[Any]
) -> list[tuple[Any, ...]]:
    """The grouped rows of *table*, summed here in Python (exact, if slower)."""
    sums: dict[tuple[Any, ...], list[Any]] = {}
    for name, who_value, start_value, value in db.execute(
        f"SELECT event_name, {who}, {start}, value FROM {table}{clause}", args
    ):
        entry = sums.setdefault((name, who_value, start_value), [0, 0])
        entry[0] += 1
        entry[1] = _add(entry[1], value)
    return [(*key, False, n, total) for key, (n, total) in sums.items()]
