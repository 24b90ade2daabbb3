"""Synchronous validation of request bodies: what Stripe answers 400 to.

The per-event checks of the stream run inline in ``EmulatorState.ingest``
(the hot path); this module holds the slow, precise explanations it raises
once a fast check failed, and the timestamp parser with its cache.
"""

from __future__ import annotations

import datetime
import re
from typing import NoReturn, Optional

from meterstream.emulator._errors import StripeError, bad_request

__all__ = [
    "FUTURE_WINDOW",
    "MAX_EVENTS",
    "MAX_STRING",
    "PAST_WINDOW",
    "TS_CACHE",
    "check_envelope",
    "explain_event",
    "format_rfc3339",
    "parse_rfc3339",
    "range_error",
    "validate_adjustment_body",
]

MAX_EVENTS = 100
MAX_STRING = 100
PAST_WINDOW = 35 * 86400.0
FUTURE_WINDOW = 5 * 60.0

_TS_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})\Z"
)
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
TS_CACHE: dict[str, float] = {}
TS_CACHE_MAX = 16384
_EVENT_KEYS = frozenset(("event_name", "payload", "identifier", "timestamp"))


def parse_rfc3339(text: str) -> Optional[float]:
    """Unix seconds for an RFC 3339 date-time, or None when it is not one.

    Clients send one timestamp for many events, so parsed strings are cached.
    """
    cached = TS_CACHE.get(text)
    if cached is not None:
        return cached
    m = _TS_RE.match(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, frac, tz = m.groups()
    try:
        days = datetime.date(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    h, mi, s = int(hour), int(minute), int(second)
    if h > 23 or mi > 59 or s > 59:
        return None
    value = days * 86400.0 + h * 3600 + mi * 60 + s
    if frac:
        value += float(frac)
    if tz not in ("Z", "z"):
        oh, om = int(tz[1:3]), int(tz[4:6])
        if oh > 23 or om > 59:
            return None
        offset = oh * 3600 + om * 60
        value = value - offset if tz[0] == "+" else value + offset
    if len(TS_CACHE) >= TS_CACHE_MAX:
        TS_CACHE.clear()
    TS_CACHE[text] = value
    return value


def format_rfc3339(ts: float) -> str:
    """``2024-06-01T12:00:00.000Z`` for Unix seconds (millisecond precision, UTC)."""
    ms = int(round(ts * 1000))
    dt = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _missing(param: str) -> StripeError:
    return bad_request(f"{param}: is required", code="parameter_missing", param=param)


def _unknown(param: str) -> StripeError:
    return bad_request(f"{param}: unknown parameter", code="parameter_unknown", param=param)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _wrong_type(param: str, expected: str, value: object) -> StripeError:
    return bad_request(f"{param}: must be {expected}, got {_json_type(value)}", param=param)


def _check_string(param: str, value: object) -> str:
    if type(value) is not str:
        raise _wrong_type(param, "a string", value)
    if not value:
        raise bad_request(
            f"{param}: must not be empty", code="parameter_invalid_string_empty", param=param
        )
    if len(value) > MAX_STRING:
        raise bad_request(
            f"{param}: must be at most {MAX_STRING} characters, got {len(value)}", param=param
        )
    return value


def explain_event(i: int, ev: object) -> NoReturn:
    """Raise the 400 for event ``i``, found wrong by a fast check (error path only)."""
    prefix = f"events[{i}]"
    if type(ev) is not dict:
        raise _wrong_type(prefix, "an object", ev)
    for key in ev:
        if key not in _EVENT_KEYS:
            raise _unknown(f"{prefix}.{key}")
    if "event_name" not in ev:
        raise _missing(f"{prefix}.event_name")
    _check_string(f"{prefix}.event_name", ev["event_name"])
    if "payload" not in ev:
        raise _missing(f"{prefix}.payload")
    payload = ev["payload"]
    if type(payload) is not dict:
        raise _wrong_type(f"{prefix}.payload", "an object", payload)
    for key, value in payload.items():
        if type(value) is not str:
            raise _wrong_type(f"{prefix}.payload.{key}", "a string", value)
    if "identifier" in ev:
        _check_string(f"{prefix}.identifier", ev["identifier"])
    if "timestamp" in ev:
        raw = ev["timestamp"]
        if type(raw) is not str:
            raise _wrong_type(f"{prefix}.timestamp", "a string", raw)
        if parse_rfc3339(raw) is None:
            raise bad_request(
                f"{prefix}.timestamp: must be an RFC 3339 date-time, got {raw[:40]!r}",
                param=f"{prefix}.timestamp",
            )
    raise AssertionError(f"{prefix}: found no fault in an event judged bad")  # pragma: no cover


def range_error(i: int, ts: float, now: float) -> NoReturn:
    param = f"events[{i}].timestamp"
    if ts < now - PAST_WINDOW:
        raise bad_request(
            f"{param}: must be within the past 35 days",
            code="timestamp_too_far_in_past",
            param=param,
        )
    raise bad_request(
        f"{param}: must not be more than 5 minutes in the future",
        code="timestamp_in_future",
        param=param,
    )


def check_envelope(body: object) -> list[object]:
    """Check the ``{"events": [...]}`` wrapper; return the events list.

    The events themselves are checked by the caller's hot loop, which calls
    :func:`explain_event` for the first one it finds wrong.
    """
    if type(body) is not dict:
        raise bad_request(f"body: must be a JSON object, got {_json_type(body)}")
    for key in body:
        if key != "events":
            raise _unknown(key)
    if "events" not in body:
        raise _missing("events")
    events = body["events"]
    if type(events) is not list:
        raise _wrong_type("events", "an array", events)
    n = len(events)
    if n == 0:
        raise bad_request(
            "events: must contain at least 1 event", code="parameter_invalid_empty", param="events"
        )
    if n > MAX_EVENTS:
        raise bad_request(
            f"events: must contain at most {MAX_EVENTS} events, got {n}", param="events"
        )
    return events


def validate_adjustment_body(body: object) -> tuple[str, str]:
    """Check a ``meter_event_adjustments`` body; return ``(event_name, identifier)``."""
    if type(body) is not dict:
        raise bad_request(f"body: must be a JSON object, got {_json_type(body)}")
    for key in body:
        if key not in ("event_name", "type", "cancel"):
            raise _unknown(key)
    for key in ("event_name", "type", "cancel"):
        if key not in body:
            raise _missing(key)
    name = _check_string("event_name", body["event_name"])
    if body["type"] != "cancel":
        raise bad_request("type: must be 'cancel'", param="type")
    cancel = body["cancel"]
    if type(cancel) is not dict:
        raise _wrong_type("cancel", "an object", cancel)
    for key in cancel:
        if key != "identifier":
            raise _unknown(f"cancel.{key}")
    if "identifier" not in cancel:
        raise _missing("cancel.identifier")
    return name, _check_string("cancel.identifier", cancel["identifier"])
