"""Shared by the fleet aggregate tests: meters, uses with known totals, totals at the emulator."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Union

import meterstream
from meterstream.emulator import Emulator

Number = Union[int, Decimal]
Totals = dict[tuple[str, str, str], Decimal]


def create_meter(emulator: Emulator, event_name: str, formula: str = "sum") -> None:
    emulator.state.create_meter(
        {
            "display_name": event_name,
            "event_name": event_name,
            "default_aggregation[formula]": formula,
        }
    )


def use(prefix: str, i: int) -> tuple[str, str, Number, dict[str, str]]:
    """The i-th use of a run: (identifier, customer, value, dimensions); ints and Decimals."""
    value: Number = Decimal(f"{i % 7}.{i % 1000:03d}") if i % 3 == 0 else i % 11 + 1
    return f"{prefix}-{i}", f"cus_{i % 4}", value, {"model": "abc"[i % 3]}


def expected_totals(prefix: str, count: int, name: str = "tokens") -> Totals:
    out: Totals = {}
    for i in range(count):
        _, customer, value, dims = use(prefix, i)
        key = (name, customer, dims["model"])
        out[key] = out.get(key, Decimal(0)) + Decimal(value)
    return out


def publish_uses(url: str, prefix: str, count: int, name: str = "tokens") -> None:
    client = meterstream.MeterClient(exporter="nats", nats_url=url, raise_errors=True)
    try:
        for i in range(count):
            ident, customer, value, dims = use(prefix, i)
            client.record(name, value=value, customer=customer, identifier=ident, dimensions=dims)
        assert client.flush(60)
    finally:
        client.shutdown(10)


def emulator_totals(emulator: Emulator, name: str = "tokens") -> Totals:
    """Exact sums of the values the emulator stored, per customer and model."""
    out: Totals = {}
    for event in emulator.state.events(name):
        payload = event["payload"]
        key = (name, payload["stripe_customer_id"], payload.get("model", ""))
        out[key] = out.get(key, Decimal(0)) + Decimal(payload["value"])
    return out


def identifiers(emulator: Emulator, name: str) -> Counter[str]:
    return Counter(e["identifier"] for e in emulator.state.events(name))
