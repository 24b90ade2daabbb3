"""Metronome's checks of a ``/v1/ingest`` body, and its error shape.

All or nothing, as a JSON-schema validation of the whole array reads (the
message of the 400 Metronome answers to ``[]`` is such a validation's):
the first fault found is a 400 ``{"message": "..."}`` whose text starts
with the place of the fault (``[3].timestamp: ...``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any, Optional

__all__ = [
    "FUTURE_WINDOW",
    "MAX_BATCH",
    "PAST_WINDOW",
    "MetronomeError",
    "parse_time",
    "validate_ingest",
]

#: "Supports backdating 34 days"; what happens to older events is not
#: documented: the emulator refuses them (400), its choice.
PAST_WINDOW = 34 * 86400.0
#: "Timestamps more than 24 hours in the future are rejected by the API."
FUTURE_WINDOW = 24 * 3600.0
MAX_BATCH = 100
MAX_TRANSACTION_ID = 128

_FIELDS = ("transaction_id", "customer_id", "event_type", "timestamp", "properties")
_RFC3339 = re.compile(
    r"\A(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?\Z"
)


class MetronomeError(Exception):
    """An error answered in Metronome's shape: ``{"message": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> bytes:
        return json.dumps({"message": self.message}).encode()


def bad(message: str) -> MetronomeError:
    return MetronomeError(400, message)


def parse_time(text: Any, where: str, *, naive_ok: bool = False) -> float:
    """Unix seconds of an RFC 3339 string with a 4-digit year.

    The official SDK writes a naive datetime with no offset
    (``2025-01-01T00:00:00.000``): *naive_ok* reads it as UTC.
    """
    if not isinstance(text, str):
        raise bad(f"{where}: must be an RFC 3339 string, got {type(text).__name__}")
    match = _RFC3339.match(text)
    if match is None or (match.group(8) is None and not naive_ok):
        raise bad(f"{where}: must be an RFC 3339 string with a 4-digit year, got {text!r}")
    year, month, day, hour, minute, second = (int(match.group(n)) for n in range(1, 7))
    offset = match.group(8) or "Z"
    if offset in ("Z", "z"):
        tz = dt.timezone.utc
    else:
        sign = 1 if offset[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    try:
        when = dt.datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError:
        raise bad(f"{where}: not a valid date and time, got {text!r}") from None
    fraction = match.group(7)
    return when.timestamp() + (float(fraction) if fraction else 0.0)


def _text(event: dict[str, Any], key: str, where: str, limit: Optional[int] = None) -> str:
    if key not in event:
        raise bad(f"{where}.{key}: is required")
    value = event[key]
    if not isinstance(value, str):
        raise bad(f"{where}.{key}: must be a string, got {type(value).__name__}")
    if not value:
        raise bad(f"{where}.{key}: must be at least 1 character")
    if limit is not None and len(value) > limit:
        raise bad(f"{where}.{key}: must be at most {limit} characters, got {len(value)}")
    return value


def validate_ingest(body: bytes, now: float) -> list[tuple[dict[str, Any], float]]:
    """The events of an ingest body with their times; a 400 for the first fault."""
    if not body:
        raise bad("body: is empty, expected a JSON array of usage events")
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise bad(f"body: not valid JSON ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(parsed, list):
        raise bad("body: must be a JSON array of usage events")
    if not parsed:
        raise bad("[array is too short: must have at least 1 elements but instance has 0 elements]")
    if len(parsed) > MAX_BATCH:
        raise bad(
            f"[array is too long: must have at most {MAX_BATCH} elements but instance has "
            f"{len(parsed)} elements]"
        )
    out: list[tuple[dict[str, Any], float]] = []
    for i, event in enumerate(parsed):
        where = f"[{i}]"
        if not isinstance(event, dict):
            raise bad(f"{where}: must be an object")
        for key in event:
            if key not in _FIELDS:
                raise bad(f"{where}.{key}: unknown field")
        _text(event, "transaction_id", where, MAX_TRANSACTION_ID)
        _text(event, "customer_id", where)
        _text(event, "event_type", where)
        stamp = parse_time(_text(event, "timestamp", where), f"{where}.timestamp")
        if stamp > now + FUTURE_WINDOW:
            raise bad(f"{where}.timestamp: more than 24 hours in the future")
        if stamp < now - PAST_WINDOW:
            raise bad(f"{where}.timestamp: more than 34 days in the past")
        properties = event.get("properties", {})
        if properties is None:
            properties = {}
        if not isinstance(properties, dict):
            raise bad(f"{where}.properties: must be an object")
        out.append(({**event, "properties": properties}, stamp))
    return out
