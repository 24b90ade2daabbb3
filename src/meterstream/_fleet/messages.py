"""What a relay takes from JetStream and what it sends on: messages in, requests out."""

from __future__ import annotations

import json
import re
from typing import Any, Optional

from meterstream._fleet.aggregate import Unit
from meterstream._record.checks import check_event_name, check_identifier

__all__ = ["check_message", "pack_units"]

_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z\Z")


def check_message(data: bytes) -> tuple[Optional[dict[str, Any]], str]:
    """(the event, "") for a valid wire event, else (None, why not)."""
    try:
        event = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not JSON: {exc}"[:200]
    if not isinstance(event, dict):
        return None, f"not a JSON object: {type(event).__name__}"
    extra = set(event) - {"identifier", "event_name", "timestamp", "payload"}
    if extra:
        return None, f"unknown fields: {', '.join(sorted(map(str, extra)))}"[:200]
    try:
        check_identifier(event.get("identifier"))
        check_event_name(event.get("event_name"))
    except Exception as exc:
        return None, str(exc)[:200]
    timestamp = event.get("timestamp")
    if not isinstance(timestamp, str) or not _TIMESTAMP.match(timestamp):
        return None, f"timestamp: expected an RFC 3339 UTC time, got {timestamp!r}"[:200]
    payload = event.get("payload")
    if not isinstance(payload, dict) or not payload:
        return None, f"payload: expected an object, got {payload!r}"[:200]
    for key, value in payload.items():
        if not isinstance(value, str):
            return None, f"payload[{key!r}]: expected a string, got {value!r}"[:200]
    return event, ""


def pack_units(units: list[Unit], size: int) -> list[list[Unit]]:
    """Units in requests of at most *size* events; a unit never straddles two requests.

    An aggregated group split in more than *size* events (sums of huge values) is
    cut in slices sent one after the other; only the last slice carries the
    messages, acknowledged once every slice was accepted (a redelivery sends
    them all again, under the same identifiers).
    """
    parts: list[list[Unit]] = []
    current: list[Unit] = []
    count = 0
    for unit in units:
        if len(unit.events) > size:
            events = unit.events
            for begin in range(0, len(events), size):
                last = begin + size >= len(events)
                piece = Unit(
                    events[begin : begin + size], unit.msgs if last else [], unit.aggregated
                )
                parts.append([piece])
            continue
        if count + len(unit.events) > size:
            parts.append(current)
            current, count = [], 0
        current.append(unit)
        count += len(unit.events)
    if current:
        parts.append(current)
    return parts
