"""Fixtures for the web integrations: a memory client, an emulator, polling."""

from __future__ import annotations

from collections.abc import Iterator

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
