"""A ``metering()`` object can be entered again: each entry has its own customer and usage."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

import meterstream
from meterstream._record import metering as _metering


@pytest.fixture
def client() -> Iterator[meterstream.MeterClient]:
    c = meterstream.configure(exporter="memory")
    yield c
    c.shutdown(0)


def sent(client: meterstream.MeterClient) -> list[tuple[str, str]]:
    assert client.flush(30)
    return [
        (e["payload"]["stripe_customer_id"], e["payload"]["value"])
        for e in client.exporter.events  # type: ignore[attr-defined]
    ]


def test_the_same_block_entered_under_two_customers_bills_each_its_own_use(
    client: meterstream.MeterClient,
) -> None:
    block = meterstream.metering("tokens")
    with meterstream.customer("cus_A"), block as usage:
        usage.add(3)
    with meterstream.customer("cus_B"), block as usage:
        usage.add(1)
    assert sent(client) == [("cus_A", "3"), ("cus_B", "1")]


def test_a_second_entry_starts_from_an_unset_value(client: meterstream.MeterClient) -> None:
    block = meterstream.metering("tokens")
    with meterstream.customer("cus_A"):
        with block as usage:
            usage.value = 5
        with block as usage:
            assert usage.value == 1  # unset again
    assert sent(client) == [("cus_A", "5"), ("cus_A", "1")]


def test_the_same_block_nested_in_itself(client: meterstream.MeterClient) -> None:
    block = meterstream.metering("tokens")
    with meterstream.customer("cus_outer"), block as outer:
        outer.add(10)
        with meterstream.customer("cus_inner"), block as inner:
            assert inner is not outer
            inner.add(2)
        outer.add(1)
    # The inner block exits first.
    assert sent(client) == [("cus_inner", "2"), ("cus_outer", "11")]


def test_the_same_block_from_many_threads_at_once(client: meterstream.MeterClient) -> None:
    block = meterstream.metering("tokens")
    threads_n = 8
    rounds = 200
    barrier = threading.Barrier(threads_n)
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait(timeout=60)
            for i in range(rounds):
                with meterstream.customer(f"cus_{n}"), block as usage:
                    usage.add(n)
                    if i % 7 == 0:
                        barrier_free_yield()
                    usage.add(n)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, threads_n + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures
    events = sent(client)
    assert len(events) == threads_n * rounds
    for customer, value in events:
        assert value == str(2 * int(customer.removeprefix("cus_")))


def barrier_free_yield() -> None:
    """Give other threads a chance to enter the block in between (no sleeping)."""
    threading.Event().wait(0)


def test_the_same_block_from_many_tasks_at_once(client: meterstream.MeterClient) -> None:
    block = meterstream.metering("tokens")

    async def task(n: int) -> None:
        async with meterstream.customer(f"cus_{n}"), block as usage:
            usage.add(n)
            await asyncio.sleep(0)  # every task is now inside the same block
            await asyncio.sleep(0)
            usage.add(n)

    async def main() -> None:
        await asyncio.gather(*(task(n) for n in range(1, 21)))

    asyncio.run(main())
    events = sent(client)
    assert sorted(events) == sorted((f"cus_{n}", str(2 * n)) for n in range(1, 21))


def test_tasks_interleaving_inside_one_block_each_keep_their_own_customer(
    client: meterstream.MeterClient,
) -> None:
    block = meterstream.metering("tokens")

    async def main() -> None:
        a_entered = asyncio.Event()
        b_exited = asyncio.Event()

        async def a() -> None:
            async with meterstream.customer("cus_A"), block as usage:
                usage.add(3)
                a_entered.set()
                await b_exited.wait()

        async def b() -> None:
            await a_entered.wait()
            async with meterstream.customer("cus_B"), block as usage:
                usage.add(1)
            b_exited.set()

        await asyncio.wait_for(asyncio.gather(a(), b()), 60)

    asyncio.run(main())
    assert sent(client) == [("cus_B", "1"), ("cus_A", "3")]


def test_blocks_left_out_of_order_each_record_their_own_use(
    client: meterstream.MeterClient,
) -> None:
    first = meterstream.metering("tokens")
    second = meterstream.metering("tokens")
    with meterstream.customer("cus_1"):
        usage1 = first.__enter__()
        usage1.add(1)
        with meterstream.customer("cus_2"):
            usage2 = second.__enter__()
            usage2.add(2)
            first.__exit__(None, None, None)
            second.__exit__(None, None, None)
    assert sent(client) == [("cus_1", "1"), ("cus_2", "2")]


def test_three_blocks_the_middle_one_left_first(client: meterstream.MeterClient) -> None:
    a, b, c = (meterstream.metering("tokens") for _ in range(3))
    with meterstream.customer("cus_1"):
        for block, amount in ((a, 1), (b, 2), (c, 3)):
            block.__enter__().add(amount)
        b.__exit__(None, None, None)
        c.__exit__(None, None, None)
        a.__exit__(None, None, None)
        assert _metering._ENTERED.get() is None  # nothing stale left behind
        # Entered again afterwards: nothing stale is found.
        with b as usage:
            usage.add(4)
    assert sent(client) == [("cus_1", "2"), ("cus_1", "3"), ("cus_1", "1"), ("cus_1", "4")]
