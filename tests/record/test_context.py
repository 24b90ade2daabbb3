"""The current customer: nesting, threads, asyncio tasks and thread pools."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import pytest

import meterstream

WAIT = 10.0  # generous bound for barriers; never reached when things work


def customers_sent(client: meterstream.MeterClient) -> list[str]:
    assert client.flush(5.0)
    events = client.exporter.events  # type: ignore[attr-defined]
    return [e["payload"]["stripe_customer_id"] for e in events]


# -- the block itself ----------------------------------------------------------------------


def test_no_customer_outside_any_block() -> None:
    assert meterstream.current_customer() is None


def test_block_sets_the_customer_and_returns_it() -> None:
    with meterstream.customer("cus_1") as entered:
        assert entered == "cus_1"
        assert meterstream.current_customer() == "cus_1"
    assert meterstream.current_customer() is None


def test_nested_blocks_restore_the_outer_customer() -> None:
    with meterstream.customer("cus_outer"):
        with meterstream.customer("cus_inner"):
            assert meterstream.current_customer() == "cus_inner"
            with meterstream.customer("cus_innermost"):
                assert meterstream.current_customer() == "cus_innermost"
            assert meterstream.current_customer() == "cus_inner"
        assert meterstream.current_customer() == "cus_outer"
    assert meterstream.current_customer() is None


def test_inner_block_that_raises_still_restores() -> None:
    with meterstream.customer("cus_outer"):
        with pytest.raises(KeyError), meterstream.customer("cus_inner"):
            raise KeyError("x")
        assert meterstream.current_customer() == "cus_outer"


def test_none_clears_the_customer_for_the_block() -> None:
    with meterstream.customer("cus_outer"):
        with meterstream.customer(None):
            assert meterstream.current_customer() is None
        assert meterstream.current_customer() == "cus_outer"


def test_an_empty_string_is_a_customer_id_kept_as_given_not_no_customer() -> None:
    # Issue 24: "" is refused at record time, naming it; None is no customer.
    with meterstream.customer("cus_outer"), meterstream.customer(""):
        assert meterstream.current_customer() == ""
    with meterstream.customer("cus_outer"), meterstream.customer(None):
        assert meterstream.current_customer() is None


def test_the_same_block_object_can_be_entered_twice() -> None:
    block = meterstream.customer("cus_1")
    with meterstream.customer("cus_0"):
        with block:
            with block:
                assert meterstream.current_customer() == "cus_1"
            assert meterstream.current_customer() == "cus_1"
        assert meterstream.current_customer() == "cus_0"


@pytest.mark.parametrize("bad", [123, 1.5, b"cus_1", ["cus_1"], object()])
def test_customer_of_a_non_string_refuses_the_records_inside(bad: Any) -> None:
    # Entering never raises (raise_errors=False must not break the host);
    # the records inside are invalid events naming the customer field.
    client = meterstream.MeterClient(exporter="memory", raise_errors=True)
    try:
        with meterstream.customer(bad):
            assert meterstream.current_customer() is None
            with pytest.raises(meterstream.InvalidEventError, match="customer"):
                client.record("calls")
    finally:
        client.shutdown(0)


def test_async_with_sets_and_restores() -> None:
    async def main() -> tuple[Optional[str], Optional[str], Optional[str]]:
        async with meterstream.customer("cus_outer"):
            async with meterstream.customer("cus_inner") as entered:
                inner = meterstream.current_customer()
            return entered, inner, meterstream.current_customer()

    assert asyncio.run(main()) == ("cus_inner", "cus_inner", "cus_outer")
    assert meterstream.current_customer() is None


def test_customer_is_shared_by_every_client(memory_client: meterstream.MeterClient) -> None:
    other = meterstream.MeterClient(exporter="memory")
    try:
        with meterstream.customer("cus_shared"):
            meterstream.record("calls")
            other.record("calls")
        assert customers_sent(memory_client) == ["cus_shared"]
        assert customers_sent(other) == ["cus_shared"]
    finally:
        other.shutdown(0)


def test_generator_uses_the_customer_of_the_block_it_was_created_in(
    memory_client: meterstream.MeterClient,
) -> None:
    @meterstream.meter("stream")
    def gen() -> Iterator[int]:
        yield from range(3)

    with meterstream.customer("cus_creator"):
        g = gen()
    with meterstream.customer("cus_consumer"):
        assert list(g) == [0, 1, 2]
    assert customers_sent(memory_client) == ["cus_creator"]


def test_customer_is_read_when_the_call_starts(memory_client: meterstream.MeterClient) -> None:
    @meterstream.meter("calls")
    def switches_customer() -> None:
        # A block opened inside the call does not change whom the call bills.
        with meterstream.customer("cus_inside"):
            pass

    with meterstream.customer("cus_caller"):
        switches_customer()
    assert customers_sent(memory_client) == ["cus_caller"]


# -- threads -----------------------------------------------------------------------------------


def test_threads_each_see_only_their_own_customer(memory_client: meterstream.MeterClient) -> None:
    n = 8
    all_inside = threading.Barrier(n, timeout=WAIT)
    seen: dict[int, list[Optional[str]]] = {}
    errors: list[BaseException] = []

    @meterstream.meter("calls", value=lambda call: call.args[0])
    def work(i: int) -> Optional[str]:
        return meterstream.current_customer()

    def run(i: int) -> None:
        try:
            with meterstream.customer(f"cus_{i}"):
                all_inside.wait()  # every thread is inside its own block now
                first = work(i)
                all_inside.wait()  # ... and every one has recorded
                seen[i] = [first, meterstream.current_customer()]
            seen[i].append(meterstream.current_customer())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert errors == []
    assert seen == {i: [f"cus_{i}", f"cus_{i}", None] for i in range(n)}
    assert memory_client.flush(5.0)
    events = memory_client.exporter.events  # type: ignore[attr-defined]
    by_value = {e["payload"]["value"]: e["payload"]["stripe_customer_id"] for e in events}
    assert by_value == {str(i): f"cus_{i}" for i in range(n)}


def test_a_thread_block_does_not_leak_into_the_main_thread() -> None:
    inside = threading.Event()
    release = threading.Event()

    def run() -> None:
        with meterstream.customer("cus_thread"):
            inside.set()
            release.wait(WAIT)

    t = threading.Thread(target=run)
    t.start()
    try:
        assert inside.wait(WAIT)
        assert meterstream.current_customer() is None
    finally:
        release.set()
        t.join(WAIT)


# -- asyncio -----------------------------------------------------------------------------------


def test_asyncio_tasks_are_isolated(memory_client: meterstream.MeterClient) -> None:
    @meterstream.meter("calls", value=lambda call: call.args[0])
    async def work(i: int) -> Optional[str]:
        await asyncio.sleep(0)
        return meterstream.current_customer()

    async def task(i: int, all_inside: asyncio.Event, count: list[int]) -> list[Optional[str]]:
        async with meterstream.customer(f"cus_{i}"):
            count[0] += 1
            if count[0] == 5:
                all_inside.set()
            await all_inside.wait()  # every task is inside its own block now
            result = await work(i)
            return [result, meterstream.current_customer()]

    async def main() -> list[list[Optional[str]]]:
        all_inside = asyncio.Event()
        count = [0]
        return await asyncio.gather(*(task(i, all_inside, count) for i in range(5)))

    results = asyncio.run(main())
    assert results == [[f"cus_{i}", f"cus_{i}"] for i in range(5)]
    assert memory_client.flush(5.0)
    events = memory_client.exporter.events  # type: ignore[attr-defined]
    by_value = {e["payload"]["value"]: e["payload"]["stripe_customer_id"] for e in events}
    assert by_value == {str(i): f"cus_{i}" for i in range(5)}


def test_a_task_inherits_the_customer_of_its_creator() -> None:
    async def child() -> Optional[str]:
        await asyncio.sleep(0)
        return meterstream.current_customer()

    async def main() -> Optional[str]:
        with meterstream.customer("cus_parent"):
            task = asyncio.ensure_future(child())
        # The block is over, but the task copied the context when it was made.
        return await task

    assert asyncio.run(main()) == "cus_parent"


def test_a_task_changing_customer_does_not_affect_its_parent() -> None:
    async def child() -> Optional[str]:
        with meterstream.customer("cus_child"):
            await asyncio.sleep(0)
            return meterstream.current_customer()

    async def main() -> tuple[Optional[str], Optional[str]]:
        with meterstream.customer("cus_parent"):
            inner = await asyncio.ensure_future(child())
            return inner, meterstream.current_customer()

    assert asyncio.run(main()) == ("cus_child", "cus_parent")


def test_asyncio_to_thread_carries_the_customer(memory_client: meterstream.MeterClient) -> None:
    @meterstream.meter("calls")
    def blocking() -> tuple[Optional[str], str]:
        return meterstream.current_customer(), threading.current_thread().name

    async def main() -> tuple[Optional[str], str]:
        with meterstream.customer("cus_async"):
            return await asyncio.to_thread(blocking)

    customer, thread_name = asyncio.run(main())
    assert customer == "cus_async"
    assert thread_name != threading.current_thread().name
    assert customers_sent(memory_client) == ["cus_async"]


# -- bind_context and thread pools -------------------------------------------------------------


def test_bind_context_carries_the_customer_into_a_thread_pool(
    memory_client: meterstream.MeterClient,
) -> None:
    @meterstream.meter("calls")
    def work() -> Optional[str]:
        return meterstream.current_customer()

    with ThreadPoolExecutor(max_workers=2) as pool:
        with meterstream.customer("cus_pool"):
            bound = pool.submit(meterstream.bind_context(work)).result(WAIT)
        assert bound == "cus_pool"
    assert customers_sent(memory_client) == ["cus_pool"]


def test_without_bind_context_a_pool_worker_has_no_customer() -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Warm the worker up outside any block so it exists before the block.
        pool.submit(lambda: None).result(WAIT)
        with meterstream.customer("cus_pool"):
            seen = pool.submit(meterstream.current_customer).result(WAIT)
    assert seen is None


def test_bind_context_keeps_the_customer_after_the_block_ends() -> None:
    with meterstream.customer("cus_bound"):
        bound = meterstream.bind_context(meterstream.current_customer)
    assert meterstream.current_customer() is None
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(bound).result(WAIT) == "cus_bound"
    assert bound() == "cus_bound"


def test_same_bound_callable_runs_concurrently_in_two_workers() -> None:
    both_running = threading.Barrier(2, timeout=WAIT)

    def work(i: int) -> tuple[int, Optional[str]]:
        both_running.wait()  # both calls are inside the bound context at once
        return i, meterstream.current_customer()

    with meterstream.customer("cus_shared"):
        bound = meterstream.bind_context(work)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(bound, i) for i in range(2)]
        results = [f.result(WAIT) for f in futures]
    assert results == [(0, "cus_shared"), (1, "cus_shared")]


def test_a_bound_call_changing_the_customer_does_not_leak_into_the_next_call() -> None:
    def work(switch: bool) -> Optional[str]:
        if switch:
            # Entered and never left: the change must stay in this call's copy.
            meterstream.customer("cus_changed").__enter__()
        return meterstream.current_customer()

    with meterstream.customer("cus_bound"):
        bound = meterstream.bind_context(work)
    assert bound(True) == "cus_changed"
    assert bound(False) == "cus_bound"
    assert meterstream.current_customer() is None


def test_bind_context_keeps_the_wrapped_name_and_passes_arguments() -> None:
    def add(a: int, b: int = 0) -> int:
        """Adds."""
        return a + b

    bound = meterstream.bind_context(add)
    assert bound.__name__ == "add"
    assert bound.__doc__ == "Adds."
    assert bound(1, b=2) == 3
