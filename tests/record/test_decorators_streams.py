"""``@meter`` on generators and async generators: one use when the stream ends or is closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any, Optional

import pytest

import meterstream
from helpers.recorded import CUS, Boom, events_of, values

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
