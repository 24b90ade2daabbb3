"""Full batches sent from the app's event loop, against the emulator on 127.0.0.1.

What is checked here is the contract of ``_loop_delivery``: full batches go
out from the attached loop; every other case (no fresh session, an answer
other than 200, transport failures, the loop closing, a flush() blocking the
loop, shutdown) goes to the delivery threads with the same batch, and every
event reaches the emulator exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, Callable, Optional

import pytest

import meterstream
from meterstream._exporters._http11 import TransportError
from meterstream._loop_delivery import MAX_FAILURES, LoopSender
from meterstream.emulator import Emulator

EVENT = "api_calls"


def stored(emulator: Emulator, customer: str = "cus_1") -> int:
    return emulator.state.total(EVENT, customer).count


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll *predicate* on the loop (letting it run) until true or *timeout* passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.005)
    return predicate()


def attach(client: meterstream.MeterClient) -> LoopSender:
    sender = client._attach_loop(asyncio.get_running_loop())
    assert sender is not None
    return sender


async def record(client: meterstream.MeterClient, count: int, customer: str = "cus_1") -> None:
    """Record *count* uses, letting the loop run between batches."""
    for n in range(count):
        client.record(EVENT, customer=customer)
        if n % 50 == 49:
            await asyncio.sleep(0)


async def open_session(client: meterstream.MeterClient, sender: LoopSender) -> None:
    """One full batch, which the threads send (opening the session) or the loop."""
    await record(client, 100)
    assert await until(lambda: client.stats()["sent"] >= 100)


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(main())  # type: ignore[arg-type]


def test_full_batches_go_out_from_the_event_loop(
    make_client: Callable[..., meterstream.MeterClient], emulator: Emulator
) -> None:
    client = make_client()

    async def main() -> LoopSender:
        sender = attach(client)
        await open_session(client, sender)
        await record(client, 1000)
        assert await until(lambda: sender.sent_batches >= 10)
        return sender

    sender = run(main)
    assert client.flush(5)
    assert stored(emulator) == 1100
    assert emulator.state.duplicates == 0
    stats = client.stats()
    # One request per batch and one session: nothing was sent twice.
    assert stats["requests"] == 11 + stats["sessions_opened"] == 12
    assert sender.sent_batches >= 10


def test_the_first_batch_opens_the_session_on_a_thread(
    make_client: Callable[..., meterstream.MeterClient], emulator: Emulator
) -> None:
    client = make_client()

    async def main() -> LoopSender:
        sender = attach(client)
        await open_session(client, sender)
        return sender

    sender = run(main)
    # No session was open: the loop handed the batch on, the threads opened one.
    assert sender.sent_batches == 0
    assert client.stats()["sessions_opened"] == 1
    assert stored(emulator) == 100


def test_expired_sessions_and_5xx_go_to_the_threads_and_arrive_once(
    make_client: Callable[..., meterstream.MeterClient], emulator: Emulator
) -> None:
    client = make_client()

    async def main() -> LoopSender:
        sender = attach(client)
        await open_session(client, sender)
        emulator.set_faults(expire_next=2)
        await record(client, 300)
        emulator.set_faults(fail_500=0.5)
        await record(client, 500)
        assert await until(lambda: client.stats()["sent"] >= 900)
        emulator.set_faults(fail_500=0.0)
        return sender

    run(main)
    assert client.flush(5)
    stats = client.stats()
    assert stored(emulator) == stats["sent"] == 900
    assert stats["retried"] >= 2
    assert stats["sessions_opened"] >= 2  # rotated after the 401s
    assert stats["failed"] == stats["dropped"] == 0


def test_a_refused_batch_is_settled_once_as_rejected(
    make_client: Callable[..., meterstream.MeterClient], emulator: Emulator
) -> None:
    reported: list[tuple[int, str]] = []
    client = make_client(
        on_delivery_error=lambda events, error: reported.append((len(events), error.reason))
    )

    async def main() -> LoopSender:
        sender = attach(client)
        await open_session(client, sender)
        emulator.set_faults(fail_500=1.0, should_retry=False)
        await record(client, 200)
        assert await until(lambda: client.stats()["failed_rejected"] >= 200)
        return sender

    sender = run(main)
    assert reported == [(100, "rejected"), (100, "rejected")]
    stats = client.stats()
    assert stats["failed_rejected"] == 200
    assert stats["sent"] == stored(emulator) == 100
    # Refused on the loop's attempt, sorted by a thread: not sent again.
    assert emulator.state.requests["meter_event_stream"]["500"] == 2
    assert sender.sent_batches == 0


def test_batches_in_flight_when_the_loop_closes_are_sent_by_the_threads(
    make_client: Callable[..., meterstream.MeterClient], emulator: Emulator
) -> None:
    client = make_client()

    async def main() -> LoopSender:
        sender = attach(client)
        await open_session(client, sender)
        emulator.set_faults(latency_ms=300)
        await record(client, 300)
        assert await until(lambda: len(sender._owned) >= 1)
        return sender  # asyncio.run cancels the sends still waiting

    sender = run(main)
    assert not sender._owned
    emulator.set_faults(latency_ms=0)
    assert client.flush(10)
    assert stored(emulator) == client.stats()["sent"] == 400


def test_flush_on_the_loops_thread_does_not_wait_on_the_blocked_loop(
    make_client: Callable[..., meterstream.MeterClient], emulator: Emulator
) -> None:
    client = make_client()

    async def main() -> float:
        sender = attach(client)
        await open_session(client, sender)
        emulator.set_faults(latency_ms=100)
        await record(client, 300)
        assert await until(lambda: len(sender._owned) >= 1)
        started = time.monotonic()
        # Blocks the loop: what the loop holds cannot finish, the threads send it.
        assert client.flush(5)
        return time.monotonic() - started

    took = run(main)
    assert took < 4
    assert stored(emulator) == 400


def test_records_from_other_threads_wake_the_loop(
    make_client: Callable[..., meterstream.MeterClient], emulator: Emulator
) -> None:
    client = make_client()

    async def main() -> LoopSender:
        sender = attach(client)
        await open_session(client, sender)

        def from_a_thread() -> None:
            for _ in range(500):
                client.record(EVENT, customer="cus_1")

        await asyncio.get_running_loop().run_in_executor(None, from_a_thread)
        assert await until(lambda: sender.sent_batches >= 5)
        return sender

    run(main)
    assert client.flush(5)
    assert stored(emulator) == 600


def test_transport_failures_leave_sending_to_the_threads_for_a_while(
    make_client: Callable[..., meterstream.MeterClient],
    emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client()
    attempts: list[int] = []

    async def broken(path: str, body: bytes, headers: Any) -> Any:
        attempts.append(1)
        raise TransportError("connection reset (test)")

    async def main() -> LoopSender:
        sender = attach(client)
        await open_session(client, sender)
        sender._http.post = broken  # type: ignore[method-assign]
        await record(client, 1000)
        assert await until(lambda: client.stats()["sent"] >= 1100)
        return sender

    with caplog.at_level(logging.WARNING, logger="meterstream"):
        sender = run(main)
    # MAX_FAILURES attempts on the loop, then the threads alone; nothing lost.
    assert len(attempts) == MAX_FAILURES
    assert sender._resume_at > time.monotonic()
    assert stored(emulator) == 1100
    assert emulator.state.duplicates == 0
    assert sum("event loop failed" in r.getMessage() for r in caplog.records) == 1


def test_shutdown_with_a_loop_attached_delivers_everything(
    make_client: Callable[..., meterstream.MeterClient], emulator: Emulator
) -> None:
    client = make_client()

    async def main() -> tuple[LoopSender, bool]:
        sender = attach(client)
        await open_session(client, sender)
        emulator.set_faults(latency_ms=50)
        await record(client, 250)
        done = await asyncio.get_running_loop().run_in_executor(None, client.shutdown, 5.0)
        return sender, done

    sender, done = run(main)
    assert done
    assert sender.closed
    assert client._delivery.loop_sender is None
    assert stored(emulator) == client.stats()["sent"] == 350


def test_only_the_stripe_exporter_under_asyncio_sends_from_the_loop(
    make_client: Callable[..., meterstream.MeterClient],
) -> None:
    clients = [
        meterstream.MeterClient(exporter="memory"),
        make_client(sync_mode=True),
        make_client(enabled=False),
    ]

    async def main() -> list[Optional[LoopSender]]:
        loop = asyncio.get_running_loop()
        return [client._attach_loop(loop) for client in clients]

    assert run(main) == [None, None, None]
    clients[0].shutdown(0)


def test_a_second_running_loop_does_not_take_over_and_a_fork_forgets_the_loop(
    make_client: Callable[..., meterstream.MeterClient],
) -> None:
    client = make_client()
    first: list[LoopSender] = []

    async def other() -> Optional[LoopSender]:
        return client._attach_loop(asyncio.get_running_loop())

    async def main() -> Optional[LoopSender]:
        first.append(attach(client))
        # Another thread's loop, while this one runs: this one keeps sending.
        second = await asyncio.get_running_loop().run_in_executor(None, asyncio.run, other())
        assert client._delivery.loop_sender is first[0]
        return second

    assert run(main) is None
    # The loop ended: the sender let go, and the next loop may attach.
    assert first[0].closed and client._delivery.loop_sender is None

    async def fork_while_attached() -> None:
        assert attach(client) is client._wake
        client._after_fork_in_child()  # what os.fork's hook runs in the child
        assert client._delivery.loop_sender is None
        assert client._wake is client._buffer.wake

    run(fork_while_attached)


@pytest.mark.parametrize("on_loop", [True, False])
def test_the_asgi_middleware_attaches_the_loop_serving_requests(
    make_client: Callable[..., meterstream.MeterClient], emulator: Emulator, on_loop: bool
) -> None:
    pytest.importorskip("fastapi")
    import httpx
    from fastapi import FastAPI

    from meterstream.integrations.asgi import MeterstreamMiddleware, header

    client = make_client()
    app = FastAPI()
    app.add_middleware(
        MeterstreamMiddleware,
        customer_resolver=header("X-Customer-Id"),
        client=client,
        deliver_on_event_loop=on_loop,
    )

    @app.get("/search")
    @client.meter(EVENT)
    async def search() -> dict[str, Any]:
        return {}

    async def main() -> Optional[LoopSender]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            for n in range(1000):
                response = await http.get("/search", headers={"X-Customer-Id": f"cus_{n % 2}"})
                assert response.status_code == 200
                if n % 50 == 49:
                    # In-process requests never wait on anything: let the
                    # loop run, as a server's loop does between requests.
                    await asyncio.sleep(0)
            sender = client._delivery.loop_sender
            assert await until(lambda: client.stats()["sent"] >= 1000)
            return sender

    sender = run(main)
    assert stored(emulator, "cus_0") == stored(emulator, "cus_1") == 500
    if on_loop:
        assert sender is not None and sender.sent_batches >= 8
    else:
        assert sender is None
