"""How the spool keeps an event in a ``pending`` row, and reads it back exactly.

Values keep their type: SQLite stores ints in its 64-bit range and floats
natively (the ``value`` columns have no type affinity); a Decimal, and an int
outside that range (``10**20`` passes meterstream's checks), is kept as its
decimal text and read back as a Decimal of the same value. Dimensions are
kept as compact JSON text, names sorted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Optional, Union

from meterstream._aggregate.arithmetic import DimsKey
from meterstream._record.events import RawEvent

__all__ = [
    "INSERT_PENDING",
    "ROW_COLUMNS",
    "ROW_FROM",
    "decode_dimensions",
    "decode_value",
    "encode_dimensions",
    "encode_value",
    "row_event",
]

#: SQLite's integers: an int outside goes in as its decimal text.
INT_LOW = -(1 << 63)
INT_HIGH = 1 << 63

INSERT_PENDING = (
    "INSERT INTO pending (event_name, customer, value, ts, identifier, dimensions) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
#: A pending row, read with its delivery attempts so far (claims hold them):
#: ``SELECT {ROW_COLUMNS}{ROW_FROM} WHERE ...``, for :func:`row_event`.
ROW_COLUMNS = (
    "p.seq, p.event_name, p.customer, p.value, p.ts, p.identifier, p.dimensions, "
    "coalesce(c.attempts, 0)"
)
ROW_FROM = " FROM pending p LEFT JOIN claims c ON c.seq = p.seq"


def encode_value(value: Any) -> Any:
    """*value* as a ``value`` column keeps it: an int or float as itself, an
    int past SQLite's 64 bits and a Decimal as decimal text."""
    kind = type(value)
    if kind is int:
        return value if INT_LOW <= value < INT_HIGH else str(value)
    return str(value) if isinstance(value, Decimal) else value


def decode_value(value: Any) -> Any:
    """A ``value`` column's content as a number: text is read as a Decimal."""
    return Decimal(value) if isinstance(value, str) else value


#: JSON of a dimensions dict with its items sorted, as dimensions_key() sorts them.
_sorted_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode


def encode_dimensions(dimensions: Union[Mapping[str, str], DimsKey]) -> Optional[str]:
    """Dimensions as a row keeps them: the compact JSON of their
    :func:`~meterstream._aggregate.arithmetic.dimensions_key`, names sorted,
    so that equal dimensions are equal text (the ``uses`` table groups by it).
    A dict is written with its items sorted, without building the key first:
    the same text, at less cost on the record path."""
    if not dimensions:
        return None
    return _sorted_json(dict(dimensions) if type(dimensions) is tuple else dimensions)


def decode_dimensions(text: Optional[str]) -> Optional[dict[str, str]]:
    if not text:
        return None
    decoded: dict[str, str] = json.loads(text)
    return decoded


def row_event(row: Sequence[Any]) -> RawEvent:
    """The recorded tuple of a row read with :data:`ROW_COLUMNS`."""
    _, name, customer, value, ts, identifier, dimensions = row[:7]
    return (name, customer, decode_value(value), ts, identifier, decode_dimensions(dimensions))
