"""Stripe's error reports in tests: events Stripe will report, the thin events
its webhook would send, and signed deliveries."""

from __future__ import annotations

import json
import time
from typing import Any, Optional

import meterstream
from meterstream.emulator import Emulator
from meterstream.emulator._reports import thin_event
from meterstream.emulator._webhooks import sign

API_KEY = "sk_test_webhooks"
WHSEC = "whsec_webhook_tests"
#: A sum meter whose customer is the payload key ``account``: an event
#: without it is accepted by the stream and reported by Stripe later.
BY_ACCOUNT_METER = {
    "display_name": "By account",
    "event_name": "by_account",
    "default_aggregation[formula]": "sum",
    "customer_mapping[event_payload_key]": "account",
    "customer_mapping[type]": "by_id",
}


def record_bad_events(client: meterstream.MeterClient) -> None:
    """An event for a name with no meter, and one whose payload has no customer."""
    client.record("no_such_meter", customer="cus_1", identifier="unknown-1")
    client.record("priced", customer="cus_1", identifier="good-1")
    # The client always sends a customer, under stripe_customer_id; this
    # meter reads "account", so Stripe finds no customer in the payload.
    client.record("by_account", customer="cus_1", identifier="nocust-1")
    assert client.flush(10)


def reported_thin_events(emulator: Emulator) -> list[dict[str, Any]]:
    """Run the emulator's validation; the thin events a webhook would receive."""
    return [thin_event(e) for e in emulator.state.validate()]


def signed(
    event: dict[str, Any], secret: str = WHSEC, *, at: Optional[float] = None
) -> tuple[bytes, str]:
    body = json.dumps(event).encode()
    return body, sign(body, secret, int(time.time() if at is None else at))
