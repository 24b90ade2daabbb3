"""Bad days (faults, outages, hangs) and the client's lifecycle, against the emulator."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from typing import Callable

import meterstream
from helpers.delivery import API_KEY
from helpers.poll import wait_for
from meterstream.emulator import Emulator


def test_500s_and_429_bursts_lose_nothing_and_duplicate_only_by_identifier(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    client = make_client(batch_size=50)
    emulator.set_faults(fail_500=0.3)
    for burst in range(5):
        emulator.set_faults(fail_429=0.5 if burst % 2 else 0.0)
        for i in range(400):
            client.record("api_calls", 1, customer=f"cus_{i % 4}")
    emulator.set_faults(fail_429=0.0)
    assert client.flush(30)
    stats = client.stats()
    assert stats["sent"] == stats["recorded"] == 2000
    assert stats["retried"] > 0 and stats["failed"] == 0
    events = emulator.state.events("api_calls")
    assert len(events) == 2000  # stored once each: any resend was a duplicate identifier
    assert len({e["identifier"] for e in events}) == 2000
    for n in range(4):
        assert emulator.state.total("api_calls", f"cus_{n}").count == 500


def test_a_server_that_refuses_connections_then_returns_loses_nothing(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    client = make_client()
    client.record("api_calls", 1, customer="cus_1")
    assert client.flush(10)
    emulator.refuse_connections(True)
    for _ in range(30):
        client.record("api_calls", 1, customer="cus_1")
    assert client.flush(0.5) is False  # Stripe unreachable: not settled
    assert client.stats()["queued"] == 30
    emulator.refuse_connections(False)
    assert client.flush(15)
    assert emulator.state.total("api_calls", "cus_1").count == 31
    assert client.stats()["failed"] == 0


def test_shutdown_returns_in_time_against_a_hanging_server(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    failures: list[BaseException] = []
    client = make_client(on_delivery_error=lambda events, error: failures.append(error))
    client.record("api_calls", 1, customer="cus_1")
    assert client.flush(10)
    emulator.set_faults(hang=True)
    for _ in range(10):
        client.record("api_calls", 1, customer="cus_1")
    started = time.monotonic()
    assert client.shutdown(2) is False
    assert time.monotonic() - started < 3
    stats = client.stats()
    assert stats["dropped_shutdown"] == 10  # counted, and handed to the callback
    assert failures and failures[0].reason == "shutdown"  # type: ignore[attr-defined]
    emulator.set_faults(hang=False)


def test_backoff_waits_are_interrupted_by_shutdown(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    client = make_client(retry_initial_delay=30, retry_max_delay=60)
    emulator.set_faults(fail_500=1.0)
    client.record("api_calls", 1, customer="cus_1")
    assert wait_for(lambda: client.stats()["retried"] >= 1 or client.stats()["requests"] >= 2)
    started = time.monotonic()
    client.shutdown(1)
    assert time.monotonic() - started < 2
    assert client.stats()["dropped_shutdown"] == 1


def test_records_keep_being_accepted_while_a_batch_waits_to_retry(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    client = make_client(retry_initial_delay=0.2, retry_max_delay=0.2)
    emulator.set_faults(fail_500=1.0)
    client.record("api_calls", 1, customer="cus_1")
    assert wait_for(lambda: client.stats()["requests"] >= 2)
    started = time.perf_counter()
    for _ in range(1000):
        client.record("api_calls", 1, customer="cus_1")
    assert time.perf_counter() - started < 0.5  # never blocked on the network
    emulator.set_faults(fail_500=0.0)
    assert client.flush(10)
    assert emulator.state.total("api_calls", "cus_1").count == 1001


def test_flush_settles_only_what_was_recorded_before_it(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    client = make_client(flush_interval=3600)  # only flush() takes a batch of 5
    for _ in range(5):
        client.record("api_calls", 1, customer="cus_1")
    emulator.set_faults(fail_500=1.0)  # the flush's batch fails until the fault goes
    outcome: list[bool] = []
    flusher = threading.Thread(target=lambda: outcome.append(client.flush(30)))
    flusher.start()
    # A refused request means flush() has taken its batch: it started.
    assert wait_for(lambda: emulator.state.requests.get("meter_event_stream", {}).get("500"))
    for _ in range(3):
        client.record("api_calls", 1, customer="cus_late")  # after the flush started
    emulator.set_faults(fail_500=0.0)
    flusher.join(30)
    assert outcome == [True]
    assert emulator.state.total("api_calls", "cus_1").count == 5
    assert emulator.state.total("api_calls", "cus_late").count == 0
    assert client.stats()["queued"] == 3  # still waiting for the next flush
    assert client.flush(10)
    assert emulator.state.total("api_calls", "cus_late").count == 3
    assert client.stats()["queued"] == 0


def test_eight_threads_of_decorated_calls_deliver_every_event_once(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    client = make_client()

    @client.meter("api_calls")
    def handler(n: int) -> int:
        return n

    barrier = threading.Barrier(8)

    def worker(t: int) -> None:
        barrier.wait()
        with meterstream.customer(f"cus_t{t}"):
            for n in range(10_000):
                handler(n)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.flush(60)
    events = emulator.state.events("api_calls")
    assert len(events) == 80_000
    assert len({e["identifier"] for e in events}) == 80_000
    assert emulator.state.duplicates == 0
    for t in range(8):
        assert emulator.state.total("api_calls", f"cus_t{t}").count == 10_000
    assert client.stats()["sent"] == 80_000


def test_sync_mode_sends_before_record_returns(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    before = set(threading.enumerate())
    client = make_client(sync_mode=True)
    client.record("api_calls", 3, customer="cus_1")
    assert emulator.state.total("api_calls", "cus_1").sum == 3
    # No delivery thread was started: the caller's thread sent the event.
    started = [t.name for t in set(threading.enumerate()) - before]
    assert not [name for name in started if name.startswith("meterstream-")], started


def test_shutdown_is_idempotent_and_later_records_are_counted_as_dropped(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    client = make_client()
    client.record("api_calls", 1, customer="cus_1")
    assert client.shutdown(5)
    assert client.shutdown(5)
    client.record("api_calls", 1, customer="cus_1")
    stats = client.stats()
    assert stats["sent"] == 1
    assert stats["dropped_shutdown"] == 1
    assert emulator.state.total("api_calls", "cus_1").count == 1


def test_exit_drains_the_buffer_through_atexit(emulator: Emulator) -> None:
    script = textwrap.dedent(
        f"""
        import meterstream
        meterstream.configure(api_key={API_KEY!r}, api_base={emulator.api_base!r},
                              stream_base={emulator.stream_base!r}, flush_interval=3600)
        for i in range(250):
            meterstream.record("api_calls", 1, customer="cus_exit")
        # no flush(), no shutdown(): the interpreter exits with events queued
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert emulator.state.total("api_calls", "cus_exit").count == 250


def test_drop_oldest_hands_evicted_events_to_on_delivery_error(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    evicted: list[dict[str, object]] = []
    client = make_client(
        max_queue_size=10,
        overflow="drop_oldest",
        flush_interval=3600,
        batch_size=100,
        on_delivery_error=lambda events, error: (
            evicted.extend(events)
            if error.reason == "queue_full"  # type: ignore[attr-defined]
            else None
        ),
    )
    for n in range(25):
        client.record("api_calls", n, customer="cus_1", identifier=f"id-{n}")
    assert client.flush(10)
    assert [e["identifier"] for e in evicted] == [f"id-{n}" for n in range(15)]
    stats = client.stats()
    assert stats["dropped_queue_full"] == 15 and stats["sent"] == 10
    assert stats["recorded"] == 25
    assert [e["identifier"] for e in emulator.state.events("api_calls")] == [
        f"id-{n}" for n in range(15, 25)
    ]
