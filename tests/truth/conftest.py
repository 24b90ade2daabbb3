"""Fixtures for Stripe's error reports: an emulator with one meter, a client aimed at it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest

import _poll
import meterstream
from meterstream.emulator import Emulator
from meterstream.emulator._reports import thin_event
from meterstream.emulator._webhooks import sign

API_KEY = "sk_test_webhooks"
WHSEC = "whsec_webhook_tests"


@pytest.fixture(scope="module")
def _emulator() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture
def emulator(_emulator: Emulator) -> Iterator[Emulator]:
    """An emulator with no automatic meters, a sum meter ``priced``, and a meter
    ``by_account`` that reads its customer from the payload key ``account``."""
    _emulator.reset()
    _emulator.state.create_meter(
        {"display_name": "Priced", "event_name": "priced", "default_aggregation[formula]": "sum"}
    )
    _emulator.state.create_meter(
        {
            "display_name": "By account",
            "event_name": "by_account",
            "default_aggregation[formula]": "sum",
            "customer_mapping[event_payload_key]": "account",
            "customer_mapping[type]": "by_id",
        }
    )
    yield _emulator
    _emulator.reset()


@pytest.fixture
def reports() -> list[meterstream.ValidationReport]:
    return []


@pytest.fixture
def client(
    emulator: Emulator, reports: list[meterstream.ValidationReport]
) -> Iterator[meterstream.MeterClient]:
    client = meterstream.MeterClient(
        api_key=API_KEY,
        api_base=emulator.api_base,
        stream_base=emulator.stream_base,
        webhook_secret=WHSEC,
        on_validation_error=reports.append,
    )
    yield client
    client.shutdown(2)


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


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    """The suite's one polling helper, with this folder's longer default timeout."""
    return _poll.wait_for(predicate, timeout)
