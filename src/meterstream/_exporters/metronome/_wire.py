"""A batch as Metronome usage events, the body of ``POST /v1/ingest``.

One recorded use becomes::

    {"transaction_id": "<our identifier>", "customer_id": "cus_123",
     "event_type": "ai_search_api", "timestamp": "2024-06-01T12:00:00.000Z",
     "properties": {"value": "25", "model": "gpt-4o"}}

The identifier is the ``transaction_id`` (Metronome ignores a repeat for 34
days, so a retry is safe), the customer is a Metronome id or an ingest alias
(a Stripe customer id set as an alias bills both), and the properties hold
the value, under the event name's Metronome value key, and the dimensions,
all strings: the value is written exactly as for Stripe (Metronome computes
in arbitrary-precision decimals and advises numbers as strings).
"""

from __future__ import annotations

import json
from typing import Any, Callable

from meterstream._record.events import EventBatch

__all__ = ["FUTURE_WINDOW", "PAST_WINDOW", "ingest_events", "to_json"]

#: Metronome accepts events up to 34 days old ("supports backdating 34 days").
PAST_WINDOW = 34 * 86400.0
#: ... and rejects those more than 24 hours ahead.
FUTURE_WINDOW = 24 * 3600.0

_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def ingest_events(
    batch: EventBatch,
    keys_for: Callable[[str], tuple[str, str]],
    value_key_for: Callable[[str], str],
) -> list[dict[str, Any]]:
    """The Metronome usage events of *batch*, in order.

    Args:
        batch: the events, as the delivery hands them over.
        keys_for: the Stripe payload keys ``(customer_key, value_key)`` of an
            event name: where the customer and the value are in the payload.
        value_key_for: the Metronome property that carries the value.
    """
    out: list[dict[str, Any]] = []
    keys: dict[str, tuple[str, str, str]] = {}
    for event in batch:
        name = event["event_name"]
        found = keys.get(name)
        if found is None:
            customer_key, value_key = keys_for(name)
            found = keys[name] = (customer_key, value_key, value_key_for(name))
        customer_key, value_key, metronome_key = found
        payload = event["payload"]
        properties = {
            key: value for key, value in payload.items() if key != customer_key and key != value_key
        }
        if value_key in payload:
            properties[metronome_key] = payload[value_key]
        out.append(
            {
                "transaction_id": event["identifier"],
                "customer_id": payload.get(customer_key, ""),
                "event_type": name,
                "timestamp": event["timestamp"],
                "properties": properties,
            }
        )
    return out


def to_json(events: list[dict[str, Any]]) -> bytes:
    """The request body: a bare JSON array, as ``/v1/ingest`` takes it."""
    return _encode(events).encode()
