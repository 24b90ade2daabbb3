"""Fixtures for the web integrations: a memory client, an emulator, polling."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Callable

import pytest

import meterstream

API_KEY = "sk_test_integrations"


@pytest.fixture
def client() -> Iterator[meterstream.MeterClient]:
    """The default client on the memory exporter, never flushing by itself."""
    client = meterstream.configure(exporter="memory", flush_interval=3600)
    yield client
    client.shutdown(0)


def sent(client: meterstream.MeterClient) -> list[tuple[str, str, str]]:
    """(event name, customer, value) of everything *client* recorded, after a flush."""
    assert client.flush(5)
    return [
        (e["event_name"], e["payload"]["stripe_customer_id"], e["payload"]["value"])
        for e in client.exporter.events  # type: ignore[attr-defined]
    ]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll *predicate* until it is true or *timeout* passes (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
