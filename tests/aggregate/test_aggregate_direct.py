"""record()'s direct fold: taken only when record_use would fold the same use."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

import meterstream
from helpers.poll import wait_for
from meterstream.errors import InvalidEventError


@pytest.fixture
def client() -> Iterator[meterstream.MeterClient]:
    client = meterstream.MeterClient(
        exporter="memory", aggregate={"tokens": "sum"}, aggregation_window=60
    )
    client.record("tokens", 1, customer="cus_fast")  # starts delivery, knows the customer
    assert wait_for(lambda: client._path.aggregate_now is not None)
    yield client
    client.shutdown(5)


def _aggregated(client: meterstream.MeterClient) -> int:
    return client.stats()["aggregated_uses"]


def test_plain_uses_fold_straight_in_and_sum_exactly(client: meterstream.MeterClient) -> None:
    for n in range(1000):
        client.record("tokens", n, customer="cus_fast")
    assert client.flush(10)
    assert _aggregated(client) == 1001
    events = client.exporter.events  # type: ignore[attr-defined]
    assert sum(int(e["payload"]["value"]) for e in events) == 1 + sum(range(1000))


def test_plain_floats_fold_straight_in_and_sum_exactly(client: meterstream.MeterClient) -> None:
    for _ in range(1000):
        client.record("tokens", 0.1, customer="cus_fast")
    assert client.flush(10)
    assert _aggregated(client) == 1001
    events = client.exporter.events  # type: ignore[attr-defined]
    # As Stripe would sum the unfolded events: each 0.1 written "0.1".
    assert sum(Decimal(e["payload"]["value"]) for e in events) == Decimal("101")


@pytest.mark.parametrize(
    "value", [True, 10**20, -(10**16), "7", float("nan"), float("inf"), 1e30, -0.5]
)
def test_a_value_the_direct_fold_does_not_take_goes_the_general_way(
    client: meterstream.MeterClient, value: object
) -> None:
    before = client.stats()
    client.record("tokens", value, customer="cus_fast")
    after = client.stats()
    aggregated = _aggregated(client) - before["aggregated_uses"]
    refused = after["dropped_invalid"] - before["dropped_invalid"]
    assert aggregated + refused == 1
    if value is True or value != value or value == float("inf"):  # never a usage value
        assert refused == 1


def test_an_unknown_customer_is_checked_before_it_is_folded() -> None:
    client = meterstream.MeterClient(
        exporter="memory", aggregate={"tokens": "sum"}, raise_errors=True
    )
    try:
        client.record("tokens", 1, customer="cus_ok")
        assert wait_for(lambda: client._path.aggregate_now is not None)
        with pytest.raises(InvalidEventError, match="customer"):
            client.record("tokens", 1, customer="cus\x00bad")
        assert _aggregated(client) == 1
    finally:
        client.shutdown(5)


def test_after_shutdown_a_use_is_dropped_and_counted_not_folded(
    client: meterstream.MeterClient,
) -> None:
    assert client.shutdown(5)
    client.record("tokens", 5, customer="cus_fast")
    stats = client.stats()
    assert stats["dropped_shutdown"] == 1
    assert stats["aggregated_uses"] == 1  # only the fixture's
