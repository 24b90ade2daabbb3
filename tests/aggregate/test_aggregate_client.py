"""aggregate= on a client: uses folded per customer and window, delivered to the emulator."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Callable

import httpx
import pytest

import meterstream
from helpers.poll import wait_for
from meterstream._exporters.memory import MemoryExporter
from meterstream.emulator import Emulator

KEY = "sk_test_aggregate_client"


def meter(emulator: Emulator, event_name: str, formula: str) -> None:
    answer = httpx.post(
        emulator.url + "/v1/billing/meters",
        headers={"Authorization": f"Bearer {KEY}"},
        data={
            "display_name": event_name,
            "event_name": event_name,
            "default_aggregation[formula]": formula,
        },
    )
    assert answer.status_code == 200, answer.text


@pytest.fixture
def make(emulator: Emulator) -> Iterator[Callable[..., meterstream.MeterClient]]:
    clients: list[meterstream.MeterClient] = []

    def make(**settings: Any) -> meterstream.MeterClient:
        client = meterstream.MeterClient(
            api_key=KEY, api_base=emulator.url, stream_base=emulator.url, **settings
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(1)


def totals(emulator: Emulator, event_name: str) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for event in emulator.state.events(event_name=event_name):
        customer = event["payload"]["stripe_customer_id"]
        out[customer] = out.get(customer, Decimal(0)) + Decimal(event["payload"]["value"])
    return out


def test_uses_of_a_sum_meter_are_folded_exactly(
    make: Callable[..., meterstream.MeterClient], emulator: Emulator
) -> None:
    meter(emulator, "llm_tokens", "sum")
    client = make(aggregate={"llm_tokens": "sum"}, aggregation_window=1)
    values = [3, Decimal("0.25"), 1.5]

    def work(t: int) -> None:
        for n in range(6000):
            client.record("llm_tokens", values[n % 3], customer=f"cus_{n % 10}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.flush(10)
    got = totals(emulator, "llm_tokens")
    assert got == {f"cus_{c}": Decimal("4.75") * 4 * 200 for c in range(10)}
    events = len(emulator.state.events(event_name="llm_tokens"))
    assert events * 100 <= 24_000  # at least a hundred times fewer events than uses
    stats = client.stats()
    assert stats["aggregated_uses"] == 24_000
    assert stats["aggregated_events"] == events


def test_a_count_meter_is_left_unfolded(
    make: Callable[..., meterstream.MeterClient], emulator: Emulator
) -> None:
    meter(emulator, "searches", "count")
    client = make(aggregate={"searches": "sum"})
    client.record("searches", customer="cus_1")  # starts delivery: the meters are read
    assert client.flush(10)
    for _ in range(50):
        client.record("searches", customer="cus_1")
    assert client.flush(10)
    assert len(emulator.state.events(event_name="searches")) >= 50
    assert client.stats()["aggregate_refused"] == 1


def test_shutdown_closes_the_open_windows(
    make: Callable[..., meterstream.MeterClient], emulator: Emulator
) -> None:
    meter(emulator, "gpu_ms", "sum")
    client = make(aggregate={"gpu_ms": "sum"}, aggregation_window=60)
    for _ in range(100):
        client.record("gpu_ms", 7, customer="cus_1")
    assert client.shutdown(5)
    assert totals(emulator, "gpu_ms") == {"cus_1": Decimal(700)}


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"aggregate": {"x": "count"}}, "aggregate"),
        ({"aggregate": {"x": "sum"}, "aggregation_window": 7}, "aggregation_window"),
        ({"aggregate": {"x": "sum"}, "disabled_events": ["x"]}, "aggregate"),
    ],
)
def test_bad_aggregation_settings_name_the_setting(settings: dict[str, Any], named: str) -> None:
    with pytest.raises(meterstream.ConfigurationError, match=named):
        meterstream.MeterClient(exporter="memory", **settings)


class _MeteredExporter(MemoryExporter):
    """An exporter of the user's own that can also list Stripe's meters."""

    def meters(self) -> list[dict[str, Any]]:
        return [
            {
                "event_name": "searches",
                "status": "active",
                "default_aggregation": {"formula": "count"},
            }
        ]


@pytest.mark.parametrize(("exporter", "refused"), [(_MeteredExporter, 1), (MemoryExporter, 0)])
def test_the_meters_are_checked_with_any_exporter_that_is_a_source_of_meters(
    exporter: type[MemoryExporter], refused: int
) -> None:
    client = meterstream.MeterClient(exporter=exporter(), aggregate={"searches": "sum"})
    try:
        client.record("searches", customer="cus_1")  # starts delivery: the meters are read
        assert client.flush(10)
        assert wait_for(lambda: client.stats()["aggregate_refused"] == refused)
    finally:
        client.shutdown(1)
