"""A ``customer()`` object can be entered again, and from several threads and tasks at once."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Optional

import meterstream


def test_one_customer_block_entered_from_many_threads_at_once() -> None:
    block = meterstream.customer("cus_shared")
    threads_n = 8
    inside = threading.Barrier(threads_n)
    failures: list[BaseException] = []
    seen: list[Optional[str]] = []

    def work() -> None:
        try:
            with block:
                inside.wait(timeout=60)  # every thread is inside the same block
                seen.append(meterstream.current_customer())
                inside.wait(timeout=60)
            seen.append(meterstream.current_customer())
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert failures == []
    assert sorted(seen, key=str) == [None] * threads_n + ["cus_shared"] * threads_n


def test_one_customer_block_entered_from_interleaved_tasks() -> None:
    block = meterstream.customer("cus_shared")

    async def main() -> list[Optional[str]]:
        a_inside = asyncio.Event()
        b_inside = asyncio.Event()
        a_done = asyncio.Event()
        seen: list[Optional[str]] = []

        async def a() -> None:
            async with block:
                a_inside.set()
                await b_inside.wait()
            # a leaves first, while b is still inside: not last in, first out
            seen.append(meterstream.current_customer())
            a_done.set()

        async def b() -> None:
            await a_inside.wait()
            async with block:
                b_inside.set()
                await a_done.wait()
                seen.append(meterstream.current_customer())
            seen.append(meterstream.current_customer())

        await asyncio.wait_for(asyncio.gather(a(), b()), 60)
        return seen

    assert asyncio.run(main()) == [None, "cus_shared", None]


def test_customer_blocks_left_out_of_order_then_entered_again() -> None:
    a, b, c = (
        meterstream.customer("cus_a"),
        meterstream.customer("cus_b"),
        meterstream.customer("cus_c"),
    )
    a.__enter__()
    b.__enter__()
    c.__enter__()
    b.__exit__(None, None, None)
    c.__exit__(None, None, None)
    a.__exit__(None, None, None)
    assert meterstream.current_customer() is None
    assert not (a._entered or b._entered or c._entered)  # nothing stale left behind
    with b:
        assert meterstream.current_customer() == "cus_b"
    assert meterstream.current_customer() is None


def test_a_customer_block_reentered_and_nested_in_itself() -> None:
    block = meterstream.customer("cus_self")
    with meterstream.customer("cus_outer"):
        with block:
            with block:
                assert meterstream.current_customer() == "cus_self"
            assert meterstream.current_customer() == "cus_self"
        assert meterstream.current_customer() == "cus_outer"
        with block:
            assert meterstream.current_customer() == "cus_self"


def test_leaving_a_block_from_a_context_that_did_not_enter_it_changes_nothing() -> None:
    # A task created inside the block runs in a copy of the context: the
    # block's entry is not its to leave (its token resets only where it was made).
    block = meterstream.customer("cus_parent")
    with block:
        copied = contextvars.copy_context()
        copied.run(block.__exit__, None, None, None)
        assert copied.run(meterstream.current_customer) == "cus_parent"
        assert meterstream.current_customer() == "cus_parent"
        seen: list[Optional[str]] = []
        worker = threading.Thread(
            target=lambda: (
                block.__exit__(None, None, None),
                seen.append(meterstream.current_customer()),
            )
        )
        worker.start()
        worker.join(60)
        assert seen == [None]  # a thread's own context: never inside the block
        assert meterstream.current_customer() == "cus_parent"
    assert meterstream.current_customer() is None
    assert not block._entered
