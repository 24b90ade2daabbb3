"""Recording: what a decorated call, a ``metering()`` block or ``record()`` puts on the wire."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Generator, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Optional

import pytest

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


# -- missing customer --------------------------------------------------------------------


def test_missing_customer_warns_once_and_counts_by_default(
    memory_client: meterstream.MeterClient, caplog: pytest.LogCaptureFixture
) -> None:
    @meterstream.meter("calls")
    def fn() -> str:
        return "still runs"

    with caplog.at_level(logging.WARNING, logger="meterstream"):
        for _ in range(5):
            assert fn() == "still runs"
    assert events_of(memory_client) == []
    assert memory_client.stats()["dropped_missing_customer"] == 5
    warnings = [r for r in caplog.records if r.name == "meterstream"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "no customer" in warnings[0].getMessage()


def test_missing_customer_drop_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    client = meterstream.configure(exporter="memory", on_missing_customer="drop")
    with caplog.at_level(logging.DEBUG, logger="meterstream"):
        meterstream.record("calls")
    assert events_of(client) == []
    assert client.stats()["dropped_missing_customer"] == 1
    assert [r for r in caplog.records if r.name == "meterstream"] == []


def test_missing_customer_raise_from_record_even_without_raise_errors() -> None:
    client = meterstream.configure(
        exporter="memory", on_missing_customer="raise", raise_errors=False
    )
    with pytest.raises(meterstream.MissingCustomerError) as info:
        meterstream.record("calls")
    assert info.value.field == "customer"
    assert "calls" in str(info.value)
    assert events_of(client) == []


def test_missing_customer_raise_when_the_customer_callable_returns_none() -> None:
    meterstream.configure(exporter="memory", on_missing_customer="raise", raise_errors=False)

    @meterstream.meter("calls", customer=lambda call: None)
    def fn() -> str:
        return "ran"

    with pytest.raises(meterstream.MissingCustomerError):
        fn()


def test_missing_customer_raise_with_raise_errors_raises_missing_customer_error() -> None:
    client = meterstream.configure(
        exporter="memory", on_missing_customer="raise", raise_errors=True
    )
    with pytest.raises(meterstream.MissingCustomerError):
        meterstream.record("calls")
    assert client.stats()["recorded"] == 0


def test_missing_customer_raise_happens_before_the_function_body() -> None:
    meterstream.configure(exporter="memory", on_missing_customer="raise")
    ran: list[bool] = []

    @meterstream.meter("calls")
    def fn() -> None:
        ran.append(True)

    with pytest.raises(meterstream.MissingCustomerError):
        fn()
    assert ran == []


def test_missing_customer_raise_happens_before_an_async_body() -> None:
    meterstream.configure(exporter="memory", on_missing_customer="raise")
    ran: list[bool] = []

    @meterstream.meter("calls", value=lambda call: 2)
    async def fn() -> None:
        ran.append(True)

    with pytest.raises(meterstream.MissingCustomerError):
        asyncio.run(fn())
    assert ran == []


def test_missing_customer_raise_happens_before_a_metering_block() -> None:
    meterstream.configure(exporter="memory", on_missing_customer="raise")
    ran: list[bool] = []
    with pytest.raises(meterstream.MissingCustomerError), meterstream.metering("calls"):
        ran.append(True)
    assert ran == []


def test_empty_customer_block_means_no_customer() -> None:
    client = meterstream.configure(exporter="memory", on_missing_customer="drop")
    with meterstream.customer("cus_outer"), meterstream.customer(""):
        meterstream.record("calls")
    assert events_of(client) == []
    assert client.stats()["dropped_missing_customer"] == 1


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


# -- generators --------------------------------------------------------------------------


def counting() -> Any:
    """``meter`` for generators: the value is the number of items yielded."""
    return meterstream.meter("stream", value=lambda call: call.items)


def test_generator_records_once_when_exhausted(memory_client: meterstream.MeterClient) -> None:
    results: list[Any] = []

    @meterstream.meter("stream", value=lambda call: results.append(call.result) or call.items)
    def gen(n: int) -> Generator[int, None, str]:
        yield from range(n)
        return "done"

    with meterstream.customer(CUS):
        assert list(gen(3)) == [0, 1, 2]
    assert values(memory_client) == ["3"]
    assert results == ["done"]


def test_generator_records_nothing_until_it_ends(memory_client: meterstream.MeterClient) -> None:
    @counting()
    def gen() -> Iterator[int]:
        yield from range(10)

    with meterstream.customer(CUS):
        g = gen()
        next(g)
        next(g)
        assert events_of(memory_client) == []
        g.close()
    assert values(memory_client) == ["2"]


def test_generator_closed_early_records_once(memory_client: meterstream.MeterClient) -> None:
    closed: list[bool] = []

    @counting()
    def gen() -> Iterator[int]:
        try:
            yield from range(10)
        finally:
            closed.append(True)

    with meterstream.customer(CUS):
        g = gen()
        assert [next(g), next(g), next(g)] == [0, 1, 2]
        g.close()
        g.close()
    assert values(memory_client) == ["3"]
    assert closed == [True]


def test_generator_break_then_close_records_once(memory_client: meterstream.MeterClient) -> None:
    @counting()
    def gen() -> Iterator[int]:
        yield from range(10)

    with meterstream.customer(CUS):
        g = gen()
        for item in g:
            if item == 4:
                break
        g.close()
    assert values(memory_client) == ["5"]


def test_generator_send_and_throw_are_forwarded(memory_client: meterstream.MeterClient) -> None:
    @meterstream.meter("stream", value=lambda call: len(call.result))
    def echo() -> Generator[int, Optional[str], list[str]]:
        received: list[str] = []
        for i in range(3):
            try:
                sent = yield i
                received.append(f"sent:{sent}")
            except KeyError as exc:
                received.append(f"thrown:{exc.args[0]}")
        return received

    with meterstream.customer(CUS):
        g = echo()
        assert next(g) == 0
        assert g.send("a") == 1
        assert g.throw(KeyError("k")) == 2
        with pytest.raises(StopIteration) as stop:
            g.send("b")
    assert stop.value.value == ["sent:a", "thrown:k", "sent:b"]
    assert values(memory_client) == ["3"]


def test_generator_that_raises_records_nothing_by_default(
    memory_client: meterstream.MeterClient,
) -> None:
    error = Boom()

    @counting()
    def gen() -> Iterator[int]:
        yield 1
        raise error

    with meterstream.customer(CUS), pytest.raises(Boom) as info:
        list(gen())
    assert info.value is error
    assert events_of(memory_client) == []


def test_generator_that_raises_records_with_on_error_record(
    memory_client: meterstream.MeterClient,
) -> None:
    error = Boom()
    seen: list[Optional[BaseException]] = []

    @meterstream.meter(
        "stream", value=lambda c: seen.append(c.exception) or c.items, on_error="record"
    )
    def gen() -> Iterator[int]:
        yield 1
        yield 2
        raise error

    with meterstream.customer(CUS), pytest.raises(Boom) as info:
        list(gen())
    assert info.value is error
    assert seen == [error]
    assert values(memory_client) == ["2"]


def test_async_generator_records_once_when_exhausted(
    memory_client: meterstream.MeterClient,
) -> None:
    @counting()
    async def agen(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    async def main() -> list[int]:
        with meterstream.customer(CUS):
            return [i async for i in agen(4)]

    assert asyncio.run(main()) == [0, 1, 2, 3]
    assert values(memory_client) == ["4"]


def test_async_generator_closed_with_aclose_records_once(
    memory_client: meterstream.MeterClient,
) -> None:
    closed: list[bool] = []

    @counting()
    async def agen() -> AsyncIterator[int]:
        try:
            for i in range(10):
                yield i
        finally:
            closed.append(True)

    async def main() -> None:
        with meterstream.customer(CUS):
            g = agen()
            assert await g.__anext__() == 0
            assert await g.__anext__() == 1
            await g.aclose()
            await g.aclose()

    asyncio.run(main())
    assert values(memory_client) == ["2"]
    assert closed == [True]


def test_async_generator_asend_is_forwarded(memory_client: meterstream.MeterClient) -> None:
    received: list[Any] = []

    @counting()
    async def agen() -> AsyncIterator[int]:
        for i in range(3):
            received.append((yield i))

    async def main() -> None:
        with meterstream.customer(CUS):
            g = agen()
            assert await g.asend(None) == 0
            assert await g.asend("x") == 1
            assert await g.asend("y") == 2
            with pytest.raises(StopAsyncIteration):
                await g.asend("z")

    asyncio.run(main())
    assert received == ["x", "y", "z"]
    assert values(memory_client) == ["3"]


def test_async_generator_athrow_is_forwarded(memory_client: meterstream.MeterClient) -> None:
    @counting()
    async def agen() -> AsyncIterator[str]:
        try:
            yield "first"
        except KeyError:
            yield "caught"

    async def main() -> None:
        with meterstream.customer(CUS):
            g = agen()
            assert await g.__anext__() == "first"
            assert await g.athrow(KeyError("k")) == "caught"
            await g.aclose()

    asyncio.run(main())
    assert values(memory_client) == ["2"]


# -- metering() --------------------------------------------------------------------------


def test_metering_unset_value_is_one(memory_client: meterstream.MeterClient) -> None:
    with meterstream.customer(CUS), meterstream.metering("gpu_seconds") as usage:
        assert isinstance(usage, meterstream.Usage)
    assert payloads(memory_client) == [{"stripe_customer_id": CUS, "value": "1"}]


def test_metering_value_set(memory_client: meterstream.MeterClient) -> None:
    with meterstream.customer(CUS), meterstream.metering("gpu_seconds") as usage:
        usage.value = 12.5
    assert values(memory_client) == ["12.5"]


def test_metering_add_starts_from_zero(memory_client: meterstream.MeterClient) -> None:
    with meterstream.customer(CUS), meterstream.metering("gpu_seconds") as usage:
        usage.add(3)
        usage.add(4)
        assert usage.value == 7
    assert values(memory_client) == ["7"]


def test_metering_add_without_amount_counts_one(memory_client: meterstream.MeterClient) -> None:
    with meterstream.customer(CUS), meterstream.metering("items") as usage:
        for _ in range(5):
            usage.add()
    assert values(memory_client) == ["5"]


def failing_block(error: BaseException, on_error: str = "skip") -> None:
    with meterstream.customer(CUS), meterstream.metering("gpu", on_error=on_error) as usage:
        usage.value = 3
        raise error


def test_metering_block_that_raises_records_nothing(
    memory_client: meterstream.MeterClient,
) -> None:
    error = Boom()
    with pytest.raises(Boom) as info:
        failing_block(error)
    assert info.value is error
    assert events_of(memory_client) == []


def test_metering_block_that_raises_records_with_on_error_record(
    memory_client: meterstream.MeterClient,
) -> None:
    error = Boom()
    with pytest.raises(Boom) as info:
        failing_block(error, on_error="record")
    assert info.value is error
    assert values(memory_client) == ["3"]


def test_metering_async_with(memory_client: meterstream.MeterClient) -> None:
    async def main() -> None:
        async with meterstream.customer(CUS), meterstream.metering("gpu_seconds") as usage:
            await asyncio.sleep(0)
            usage.value = Decimal("2.50")

    asyncio.run(main())
    assert values(memory_client) == ["2.5"]


def test_metering_identifier_and_dimensions(memory_client: meterstream.MeterClient) -> None:
    block = meterstream.metering("gpu_seconds", identifier="job_1", dimensions={"gpu": "a100"})
    with meterstream.customer(CUS), block:
        pass
    (event,) = events_of(memory_client)
    assert event["identifier"] == "job_1"
    assert event["payload"] == {"stripe_customer_id": CUS, "value": "1", "gpu": "a100"}


def test_client_metering_uses_that_client() -> None:
    default = meterstream.configure(exporter="memory")
    other = meterstream.MeterClient(exporter="memory")
    try:
        with meterstream.customer(CUS), other.metering("gpu_seconds") as usage:
            usage.value = 2
        assert values(other) == ["2"]
        assert events_of(default) == []
    finally:
        other.shutdown(0)


# -- record() ----------------------------------------------------------------------------


def test_record_with_every_option(memory_client: meterstream.MeterClient) -> None:
    when = datetime.now(timezone.utc).replace(microsecond=250_000) - timedelta(days=2)
    meterstream.record(
        "api_calls",
        Decimal("2.5"),
        customer="cus_r",
        identifier="evt_1",
        dimensions={"model": "m1"},
        timestamp=when,
    )
    assert events_of(memory_client) == [
        {
            "identifier": "evt_1",
            "event_name": "api_calls",
            "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S") + ".250Z",
            "payload": {"stripe_customer_id": "cus_r", "value": "2.5", "model": "m1"},
        }
    ]


def test_record_timestamp_as_unix_seconds(memory_client: meterstream.MeterClient) -> None:
    seconds = int(time.time()) - 3600
    meterstream.record("calls", customer=CUS, timestamp=seconds)
    expected = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert events_of(memory_client)[0]["timestamp"] == expected


def test_record_timestamp_in_another_timezone_is_sent_in_utc(
    memory_client: meterstream.MeterClient,
) -> None:
    plus_two = timezone(timedelta(hours=2))
    when = datetime.now(plus_two).replace(microsecond=0) - timedelta(hours=1)
    meterstream.record("calls", customer=CUS, timestamp=when)
    expected = when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert events_of(memory_client)[0]["timestamp"] == expected


def test_record_numeric_string_value(memory_client: meterstream.MeterClient) -> None:
    meterstream.record("calls", "12.50", customer=CUS)
    assert values(memory_client) == ["12.5"]


def test_record_on_a_client_goes_to_that_client_only() -> None:
    default = meterstream.configure(exporter="memory")
    other = meterstream.MeterClient(exporter="memory")
    try:
        other.record("calls", 2, customer=CUS)
        meterstream.record("calls", 3, customer=CUS)
        assert values(other) == ["2"]
        assert values(default) == ["3"]
    finally:
        other.shutdown(0)


def test_events_keep_their_recording_order(memory_client: meterstream.MeterClient) -> None:
    with meterstream.customer(CUS):
        for i in range(250):
            meterstream.record("calls", i)
    assert values(memory_client) == [str(i) for i in range(250)]


# -- exporters, flush and stats ----------------------------------------------------------


def test_memory_exporter_clear(memory_client: meterstream.MeterClient) -> None:
    meterstream.record("calls", customer=CUS)
    assert len(events_of(memory_client)) == 1
    memory_client.exporter.clear()  # type: ignore[attr-defined]
    assert memory_client.exporter.events == []  # type: ignore[attr-defined]
    meterstream.record("calls", 2, customer=CUS)
    assert values(memory_client) == ["2"]


def test_flush_returns_true(memory_client: meterstream.MeterClient) -> None:
    meterstream.record("calls", customer=CUS)
    assert meterstream.flush() is True
    assert memory_client.flush(1.0) is True


def test_flush_with_nothing_recorded_returns_true(memory_client: meterstream.MeterClient) -> None:
    assert meterstream.flush(1.0) is True


def test_stats_before_and_after_flush() -> None:
    client = meterstream.configure(exporter="memory", flush_interval=3600)
    with meterstream.customer(CUS):
        for _ in range(3):
            meterstream.record("calls")
    before = meterstream.stats()
    assert (before["recorded"], before["queued"], before["memory"]) == (3, 3, 0)
    assert client.flush(5.0)
    after = meterstream.stats()
    assert (after["recorded"], after["queued"], after["memory"]) == (3, 0, 3)


def test_stats_count_drops_by_reason(memory_client: meterstream.MeterClient) -> None:
    with meterstream.customer(CUS):
        meterstream.record("calls")
        meterstream.record("calls")
        meterstream.record("calls", float("nan"))
    meterstream.record("calls")  # no customer
    assert memory_client.flush(5.0)
    stats = meterstream.stats()
    expected = {
        "recorded": 2,
        "queued": 0,
        "sent": 0,
        "memory": 2,
        "retried": 0,
        "failed": 0,
        "dropped": 2,
        "failed_rejected": 0,
        "failed_retries_exhausted": 0,
        "dropped_queue_full": 0,
        "dropped_shutdown": 0,
        "dropped_invalid": 1,
        "dropped_missing_customer": 1,
        "sessions_opened": 0,
        "requests": 0,
    }
    assert {key: stats[key] for key in expected} == expected


def test_record_after_shutdown_is_dropped_and_counted(
    memory_client: meterstream.MeterClient,
) -> None:
    assert memory_client.shutdown(1.0)
    meterstream.record("calls", customer=CUS)
    assert memory_client.stats()["dropped_shutdown"] == 1
    assert memory_client.exporter.events == []  # type: ignore[attr-defined]


def test_log_exporter_writes_one_compact_json_line_per_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = meterstream.configure(exporter="log")
    with caplog.at_level(logging.INFO, logger="meterstream"):
        meterstream.record("calls", 2, customer=CUS, identifier="id_1")
        meterstream.record("calls", 3, customer=CUS, identifier="id_2")
        assert client.flush(5.0)
    lines = [r for r in caplog.records if r.name == "meterstream"]
    assert [r.levelno for r in lines] == [logging.INFO, logging.INFO]
    decoded = []
    for record in lines:
        message = record.getMessage()
        assert message.startswith("meter event ")
        text = message[len("meter event ") :]
        event = json.loads(text)
        assert text == json.dumps(event, separators=(",", ":"))
        decoded.append(event)
    assert [(e["identifier"], e["payload"]["value"]) for e in decoded] == [
        ("id_1", "2"),
        ("id_2", "3"),
    ]


def test_none_exporter_discards_and_counts_under_none() -> None:
    client = meterstream.configure(exporter="none")
    meterstream.record("calls", customer=CUS)
    assert client.flush(5.0)
    assert client.stats()["none"] == 1
    assert client.stats()["sent"] == 0
    assert not hasattr(client.exporter, "events")
