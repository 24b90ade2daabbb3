"""What SQLite keeps of the journal's events once they settle, and what is withdrawn.

The journal holds an event until it settles; what must be queried after that
lives in the spool's SQLite file: the events Stripe accepted (the history,
:mod:`.history`), the events it refused (``dead``, with the reason, here),
and the identifiers withdrawn before they were sent (``withdrawn``, here),
which a process adopting a dead process's segments must not send.

Each function takes the spool's connection and runs inside the caller's
write transaction (``BEGIN IMMEDIATE``), under the spool's lock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Optional

from meterstream._record.events import RawEvent
from meterstream._spool.rows import encode_dimensions, encode_value

__all__ = [
    "WITHDRAWN_KEPT",
    "bury_events",
    "prune_withdrawn",
    "withdraw",
    "withdrawn",
]

#: Withdrawn identifiers are remembered this long: longer than any segment waits.
WITHDRAWN_KEPT = 35 * 86400.0


def bury_events(
    db: sqlite3.Connection,
    letters: Iterable[tuple[RawEvent, int, str, Optional[str], Optional[str]]],
    now: float,
) -> int:
    """Keep refused events as dead letters: ``(event, attempts, reason, code, message)``."""
    rows = [
        (
            e[0],
            e[1],
            encode_value(e[2]),
            e[3],
            e[4],
            encode_dimensions(e[5]) if e[5] else None,
            attempts,
            reason,
            code,
            message,
            now,
        )
        for e, attempts, reason, code, message in letters
    ]
    db.executemany(
        "INSERT INTO dead (event_name, customer, value, ts, identifier, dimensions, attempts, "
        "reason, code, message, dead_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return len(rows)


def withdraw(db: sqlite3.Connection, identifier: str, now: float) -> None:
    """Remember that *identifier* was withdrawn before it was sent."""
    db.execute(
        "INSERT OR REPLACE INTO withdrawn (identifier, withdrawn_at) VALUES (?, ?)",
        (identifier, now),
    )


def withdrawn(db: sqlite3.Connection) -> set[str]:
    """Every identifier withdrawn (a few: withdrawals are rare)."""
    return {row[0] for row in db.execute("SELECT identifier FROM withdrawn")}


def prune_withdrawn(db: sqlite3.Connection, before: float) -> None:
    db.execute("DELETE FROM withdrawn WHERE withdrawn_at < ?", (before,))
