"""Folded events through the real pipeline to the emulator: Stripe's totals, exactly."""

from __future__ import annotations

import math
import random
import threading
from decimal import Context, Decimal, Inexact
from typing import Any

import pytest

import meterstream
from meterstream._aggregate.aggregator import Aggregator
from meterstream._aggregate.arithmetic import dimensions_key
from meterstream._exporters.stripe._api import StripeAPI
from meterstream._record import checks as _checks
from meterstream._record.events import RawEvent
from meterstream.emulator import Emulator

SECRET = "sk_test_aggregate_e2e"
EXACT = Context(prec=1000, traps=[Inexact])
DIMS = [None, {"model": "gpt-4o"}, {"model": "small", "region": "eu"}]


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"meters": ["llm_tokens", "gpu_ms"]}


def deliver(emulator: Emulator, events: list[RawEvent]) -> None:
    """Send folded events the way the client will: as uses with their own
    identifier and timestamp."""
    client = meterstream.MeterClient(
        api_key=SECRET,
        api_base=emulator.api_base,
        stream_base=emulator.stream_base,
        raise_errors=True,
    )
    try:
        for name, customer, value, timestamp, ident, dims in events:
            assert isinstance(ident, str)
            client.record(
                name,
                value,
                customer=customer,
                identifier=ident,
                timestamp=timestamp,
                dimensions=dims,
            )
        assert client.flush(60)
        assert client.stats()["sent"] == len(events)
    finally:
        client.shutdown(5)


def aggregate_in_threads(
    aggregator: Aggregator, plans: list[list[tuple[str, str, Any, Any]]]
) -> list[RawEvent]:
    barrier = threading.Barrier(len(plans))

    def work(plan: list[tuple[str, str, Any, Any]]) -> None:
        barrier.wait()
        for name, customer, value, dims in plan:
            assert aggregator.add(name, customer, value, dims)

    threads = [threading.Thread(target=work, args=(plan,)) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return aggregator.close(force=True)


@pytest.mark.slow
def test_stripe_bills_exactly_the_uses_with_a_hundred_times_fewer_events(
    emulator: Emulator,
) -> None:
    aggregator = Aggregator(["llm_tokens", "gpu_ms"], 5)
    plans = []
    exact: dict[tuple[str, str], Decimal] = {}
    uses = 0
    for t in range(8):
        rng = random.Random(t)
        plan = []
        for _ in range(25_000):
            customer = f"cus_{rng.randrange(100)}"
            if rng.random() < 0.6:
                name, value = "llm_tokens", rng.randint(1, 4000)
            elif rng.random() < 0.5:
                name, value = "gpu_ms", rng.uniform(0.01, 5000.0)
            else:
                name, value = "gpu_ms", Decimal(rng.randint(1, 10**9)).scaleb(-6)
            plan.append((name, customer, value, DIMS[rng.randrange(3)]))
            written = Decimal(_checks.format_value(value))
            exact[(name, customer)] = EXACT.add(exact.get((name, customer), Decimal(0)), written)
        plans.append(plan)
        uses += len(plan)
    events = aggregate_in_threads(aggregator, plans)
    deliver(emulator, events)

    stored = emulator.state.events()
    assert len(stored) == len(events) and not emulator.state.validation_errors
    billed: dict[tuple[str, str], Decimal] = {}
    for event in stored:
        key = (event["event_name"], event["customer"])
        billed[key] = EXACT.add(billed.get(key, Decimal(0)), Decimal(event["payload"]["value"]))
    assert billed == exact  # what Stripe received adds up to every use, to the last digit
    assert uses >= 100 * len(events)

    # Stripe's own summaries of the int meter: float sums, exact below 2**53.
    with StripeAPI(SECRET, emulator.api_base) as api:
        found = api.meter_for_event("llm_tokens")
        assert found is not None
        start = min(int(e[3]) for e in events) // 60 * 60
        end = (max(int(e[3]) for e in events) // 60 + 1) * 60
        for customer in (f"cus_{i}" for i in range(0, 100, 9)):
            summaries = api.event_summaries(found["id"], customer, start, end)
            total = math.fsum(s["aggregated_value"] for s in summaries)
            assert total == float(exact.get(("llm_tokens", customer), Decimal(0)))


def test_dimensions_reach_the_payload_and_fold_separately(emulator: Emulator) -> None:
    aggregator = Aggregator(["llm_tokens"], 5)
    for dims in DIMS * 3:
        aggregator.add("llm_tokens", "cus_1", 2, dims)
    events = aggregator.close(force=True)
    deliver(emulator, events)
    by_dims = {}
    for event in emulator.state.events():
        payload = dict(event["payload"])
        payload.pop("stripe_customer_id")
        value = payload.pop("value")
        by_dims[dimensions_key(payload)] = value
    assert by_dims == {dimensions_key(d): "6" for d in DIMS}
