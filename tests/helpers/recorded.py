"""What the recording tests share: a customer, two exceptions, and readers of the
memory exporter."""

from __future__ import annotations

from typing import Any

import meterstream

CUS = "cus_rec"


class Boom(Exception):
    """The user's own exception."""


class Fatal(BaseException):
    """A BaseException that is not an Exception (as KeyboardInterrupt is)."""


def events_of(client: meterstream.MeterClient) -> list[dict[str, Any]]:
    assert client.flush(5.0)
    return list(client.exporter.events)  # type: ignore[attr-defined]


def payloads(client: meterstream.MeterClient) -> list[dict[str, str]]:
    return [e["payload"] for e in events_of(client)]


def values(client: meterstream.MeterClient) -> list[str]:
    return [p["value"] for p in payloads(client)]


def sent(client: meterstream.MeterClient) -> list[tuple[str, str, str]]:
    """(event name, customer, value) of everything *client* recorded, after a flush."""
    assert client.flush(5)
    return [
        (e["event_name"], e["payload"]["stripe_customer_id"], e["payload"]["value"])
        for e in client.exporter.events  # type: ignore[attr-defined]
    ]
