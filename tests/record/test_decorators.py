"""``@meter``: what a decorated call records (value, customer, identifier, dimensions), on_error."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timezone
from typing import Optional

import pytest

import meterstream
from helpers.recorded import CUS, Boom, Fatal, events_of, payloads, values

# -- value -------------------------------------------------------------------------------


def test_default_value_is_one(memory_client: meterstream.MeterClient) -> None:
    @meterstream.meter("calls")
    def fn() -> str:
        return "r"

    with meterstream.customer(CUS):
        assert fn() == "r"
    assert payloads(memory_client) == [{"stripe_customer_id": CUS, "value": "1"}]


def test_constant_value(memory_client: meterstream.MeterClient) -> None:
    @meterstream.meter("calls", value=25)
    def fn() -> None:
        return None

    with meterstream.customer(CUS):
        fn()
        fn()
    assert values(memory_client) == ["25", "25"]


def test_value_callable_sees_the_result(memory_client: meterstream.MeterClient) -> None:
    @meterstream.meter("results", value=lambda call: len(call.result))
    def search(query: str) -> list[str]:
        return [query] * 3

    with meterstream.customer(CUS):
        assert search("shoes") == ["shoes"] * 3
    assert values(memory_client) == ["3"]


def test_value_callable_sees_elapsed_seconds(memory_client: meterstream.MeterClient) -> None:
    seen: list[float] = []

    def gpu_ms(call: meterstream.Call) -> float:
        seen.append(call.elapsed)
        return call.elapsed * 1000

    @meterstream.meter("gpu_ms", value=gpu_ms)
    def work() -> int:
        return sum(range(10_000))

    started = time.perf_counter()
    with meterstream.customer(CUS):
        work()
    outer = time.perf_counter() - started
    (value,) = values(memory_client)
    assert isinstance(seen[0], float)
    assert 0 < seen[0] <= outer
    assert float(value) == pytest.approx(seen[0] * 1000, rel=1e-12)


def test_value_callable_sees_args_and_kwargs(memory_client: meterstream.MeterClient) -> None:
    calls: list[meterstream.Call] = []

    def value(call: meterstream.Call) -> int:
        calls.append(call)
        return int(call.args[0] + call.kwargs["extra"])

    @meterstream.meter("calls", value=value)
    def fn(n: int, *, extra: int) -> None:
        return None

    with meterstream.customer(CUS):
        fn(2, extra=5)
    assert values(memory_client) == ["7"]
    assert calls[0].args == (2,)
    assert calls[0].kwargs == {"extra": 5}
    assert calls[0].exception is None
    assert calls[0].instance is None


# -- customer ----------------------------------------------------------------------------


def test_customer_from_the_context(memory_client: meterstream.MeterClient) -> None:
    @meterstream.meter("calls")
    def fn() -> None:
        return None

    with meterstream.customer("cus_a"):
        fn()
    with meterstream.customer("cus_b"):
        fn()
    assert [p["stripe_customer_id"] for p in payloads(memory_client)] == ["cus_a", "cus_b"]


def test_customer_callable(memory_client: meterstream.MeterClient) -> None:
    @meterstream.meter("api_calls", customer=lambda call: call.kwargs["account"])
    def handler(*, account: str) -> None:
        return None

    handler(account="cus_from_call")
    assert payloads(memory_client) == [{"stripe_customer_id": "cus_from_call", "value": "1"}]


def test_customer_callable_wins_over_the_context(memory_client: meterstream.MeterClient) -> None:
    @meterstream.meter("api_calls", customer=lambda call: call.args[0])
    def handler(account: str) -> None:
        return None

    with meterstream.customer("cus_context"):
        handler("cus_explicit")
    assert payloads(memory_client)[0]["stripe_customer_id"] == "cus_explicit"


def test_constant_customer_wins_over_the_context(memory_client: meterstream.MeterClient) -> None:
    @meterstream.meter("api_calls", customer="cus_fixed")
    def handler() -> None:
        return None

    with meterstream.customer("cus_context"):
        handler()
    assert payloads(memory_client)[0]["stripe_customer_id"] == "cus_fixed"


def test_record_explicit_customer_wins_over_the_context(
    memory_client: meterstream.MeterClient,
) -> None:
    with meterstream.customer("cus_context"):
        meterstream.record("calls", customer="cus_explicit")
    assert payloads(memory_client)[0]["stripe_customer_id"] == "cus_explicit"


def test_metering_explicit_customer_wins_over_the_context(
    memory_client: meterstream.MeterClient,
) -> None:
    with meterstream.customer("cus_context"), meterstream.metering("calls", customer="cus_x"):
        pass
    assert payloads(memory_client)[0]["stripe_customer_id"] == "cus_x"


# -- identifier and dimensions -----------------------------------------------------------


def test_constant_identifier(memory_client: meterstream.MeterClient) -> None:
    @meterstream.meter("calls", identifier="req_fixed")
    def fn() -> None:
        return None

    with meterstream.customer(CUS):
        fn()
    assert [e["identifier"] for e in events_of(memory_client)] == ["req_fixed"]


def test_identifier_callable(memory_client: meterstream.MeterClient) -> None:
    @meterstream.meter("calls", identifier=lambda call: f"req_{call.args[0]}")
    def fn(request_id: int) -> None:
        return None

    with meterstream.customer(CUS):
        fn(1)
        fn(2)
    assert [e["identifier"] for e in events_of(memory_client)] == ["req_1", "req_2"]


def test_generated_identifiers_are_unique_and_short(memory_client: meterstream.MeterClient) -> None:
    with meterstream.customer(CUS):
        for _ in range(500):
            meterstream.record("calls")
    ids = [e["identifier"] for e in events_of(memory_client)]
    assert len(set(ids)) == 500
    assert all(1 <= len(i) <= 100 for i in ids)


def test_constant_dimensions(memory_client: meterstream.MeterClient) -> None:
    @meterstream.meter("llm_tokens", value=10, dimensions={"model": "gpt-4o", "region": "eu"})
    def fn() -> None:
        return None

    with meterstream.customer(CUS):
        fn()
    assert payloads(memory_client) == [
        {"stripe_customer_id": CUS, "value": "10", "model": "gpt-4o", "region": "eu"}
    ]


def test_wire_shape_of_an_event(memory_client: meterstream.MeterClient) -> None:
    with meterstream.customer(CUS):
        meterstream.record("calls", 3)
    (event,) = events_of(memory_client)
    assert set(event) == {"identifier", "event_name", "timestamp", "payload"}
    assert event["event_name"] == "calls"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["timestamp"])
    stamp = datetime.strptime(event["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    assert abs((now - stamp).total_seconds()) < 60


# -- on_error ----------------------------------------------------------------------------


def test_a_call_that_raises_records_nothing_by_default(
    memory_client: meterstream.MeterClient,
) -> None:
    error = Boom("no")

    @meterstream.meter("calls")
    def fn() -> None:
        raise error

    with meterstream.customer(CUS), pytest.raises(Boom) as info:
        fn()
    assert info.value is error
    assert events_of(memory_client) == []
    assert memory_client.stats()["recorded"] == 0


def test_on_error_record_records_the_failed_call(memory_client: meterstream.MeterClient) -> None:
    error = Boom("no")
    calls: list[meterstream.Call] = []

    def value(call: meterstream.Call) -> int:
        calls.append(call)
        return 5

    @meterstream.meter("calls", value=value, on_error="record")
    def fn(x: int) -> None:
        raise error

    with meterstream.customer(CUS), pytest.raises(Boom) as info:
        fn(1)
    assert info.value is error
    assert values(memory_client) == ["5"]
    assert calls[0].exception is error
    assert calls[0].result is None
    assert calls[0].args == (1,)


def test_on_error_record_with_a_constant_value(memory_client: meterstream.MeterClient) -> None:
    @meterstream.meter("calls", value=4, on_error="record")
    def fn() -> None:
        raise Boom

    with meterstream.customer(CUS), pytest.raises(Boom):
        fn()
    assert values(memory_client) == ["4"]


def test_on_error_record_on_an_async_function(memory_client: meterstream.MeterClient) -> None:
    error = Boom()
    seen: list[Optional[BaseException]] = []

    @meterstream.meter("calls", value=lambda c: seen.append(c.exception) or 2, on_error="record")
    async def fn() -> None:
        raise error

    async def main() -> None:
        with meterstream.customer(CUS):
            await fn()

    with pytest.raises(Boom) as info:
        asyncio.run(main())
    assert info.value is error
    assert seen == [error]
    assert values(memory_client) == ["2"]


def test_async_exception_passes_through_unchanged_by_default(
    memory_client: meterstream.MeterClient,
) -> None:
    error = Boom()

    @meterstream.meter("calls")
    async def fn() -> None:
        raise error

    async def main() -> None:
        with meterstream.customer(CUS):
            await fn()

    with pytest.raises(Boom) as info:
        asyncio.run(main())
    assert info.value is error
    assert events_of(memory_client) == []


def test_base_exception_passes_through_unchanged(memory_client: meterstream.MeterClient) -> None:
    error = Fatal()

    @meterstream.meter("calls", value=lambda call: 1, on_error="record")
    def fn() -> None:
        raise error

    with meterstream.customer(CUS), pytest.raises(Fatal) as info:
        fn()
    assert info.value is error


def test_exception_traceback_still_points_at_the_user_code(
    memory_client: meterstream.MeterClient,
) -> None:
    @meterstream.meter("calls")
    def failing_user_function() -> None:
        raise Boom("here")

    with meterstream.customer(CUS), pytest.raises(Boom) as info:
        failing_user_function()
    assert info.traceback[-1].name == "failing_user_function"
