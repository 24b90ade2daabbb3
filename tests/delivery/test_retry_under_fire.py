"""Under fire: retries wait in a queue, not on a thread; shutdown delivers what it can."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import meterstream
from helpers.delivery import ScriptedExporter
from helpers.poll import wait_for
from meterstream._exporters.base import EventBatch, Exporter, RetryableExportError
from meterstream.emulator import Emulator


class StuckBatchExporter(Exporter):
    """Accepts every batch except those holding a ``stuck-`` event, which always fail."""

    max_concurrency = 1

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self._lock = threading.Lock()

    def export(self, events: EventBatch, batch_id: str = "") -> None:
        ids = [event["identifier"] for event in events]
        if any(i.startswith("stuck-") for i in ids):
            raise RetryableExportError("HTTP 500 api_error (a batch the server keeps failing)")
        with self._lock:
            self.accepted.extend(ids)


def test_a_batch_waiting_to_retry_does_not_hold_the_only_delivery_thread() -> None:
    exporter = StuckBatchExporter()
    client = meterstream.MeterClient(
        exporter=exporter,
        batch_size=10,
        retry_initial_delay=60,
        retry_max_delay=60,
        flush_interval=3600,
    )
    try:
        for n in range(10):
            client.record("api_calls", 1, customer="cus_1", identifier=f"stuck-{n}")
        assert wait_for(lambda: client.stats()["retried"] >= 1)
        for n in range(200):
            client.record("api_calls", 1, customer="cus_1", identifier=f"ok-{n}")
        # The one thread is free while the stuck batch waits its minute.
        assert wait_for(lambda: client.stats()["sent"] == 200, timeout=20)
        assert sorted(exporter.accepted) == sorted(f"ok-{n}" for n in range(200))
        assert client.stats()["queued"] == 10
    finally:
        client.shutdown(0.5)
    assert client.stats()["dropped_shutdown"] == 10


def test_shutdown_retries_waiting_batches_at_once_and_delivers_them(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    failures: list[Any] = []
    client = make_client(
        batch_size=10,
        retry_initial_delay=30,
        retry_max_delay=60,
        on_delivery_error=lambda events, error: failures.append(error),
    )
    emulator.set_faults(fail_500=1.0)
    for n in range(120):
        client.record("api_calls", 1, customer="cus_1", identifier=f"id-{n}")
    assert wait_for(lambda: client.stats()["retried"] >= 4)
    emulator.set_faults(fail_500=0.0)  # healthy again, while batches wait up to a minute
    started = time.monotonic()
    assert client.shutdown(10)
    assert time.monotonic() - started < 10
    stats = client.stats()
    assert stats["sent"] == 120 and stats["dropped_shutdown"] == 0, stats
    assert not failures
    assert {e["identifier"] for e in emulator.state.events("api_calls")} == {
        f"id-{n}" for n in range(120)
    }


def test_shutdown_with_a_hundred_thousand_events_queued_returns_in_its_timeout(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    client = make_client(max_queue_size=100_000, flush_interval=3600)
    emulator.set_faults(hang=True)
    for _ in range(400):  # a full batch for each of the 4 threads, which hang on it
        client.record("api_calls", 1, customer="cus_1")
    assert wait_for(lambda: client.stats()["requests"] >= 5)  # a session, 4 batches
    for _ in range(100_000 - 400):
        client.record("api_calls", 1, customer="cus_1")
    started = time.monotonic()
    assert client.shutdown(1.0) is False
    elapsed = time.monotonic() - started
    # The contract is timeout + 100 ms; the margin here is for a loaded machine.
    assert elapsed < 1.35, elapsed
    stats = client.stats()
    assert stats["dropped_shutdown"] == 100_000 and stats["queued"] == 0
    emulator.set_faults(hang=False)


def test_a_401_resends_at_once_even_after_the_batch_failed_before() -> None:
    exporter = ScriptedExporter(
        [
            RetryableExportError("HTTP 500", retry_after=0.01, status=500),
            RetryableExportError("session expired; rotating", retry_after=0.0, status=401),
            RetryableExportError("session expired; rotating", retry_after=0.0, status=401),
        ]
    )
    client = meterstream.MeterClient(
        exporter=exporter, retry_initial_delay=60, retry_max_delay=60, flush_interval=3600
    )
    try:
        client.record("api_calls", 1, customer="cus_1")
        assert client.flush(10)
        assert client.stats()["sent"] == 1
        assert len(exporter.attempts) == 4
    finally:
        client.shutdown(0.5)


def test_an_outage_is_probed_one_request_at_a_time_and_recovery_releases_every_batch(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    client = make_client(batch_size=10, retry_initial_delay=0.05, retry_max_delay=1.0)
    emulator.set_faults(fail_500=1.0)
    for n in range(200):
        client.record("api_calls", 1, customer="cus_1", identifier=f"id-{n}")
    assert wait_for(lambda: client.stats()["retried"] >= 8)
    failed = lambda: emulator.state.requests.get("meter_event_stream", {}).get("500", 0)  # noqa: E731
    before = failed()
    threading.Event().wait(3.0)  # a stretch of outage, measured
    # One probe at a time, about 2 a second here; 4 threads each backing off
    # alone sent 23 to 33 in 3 s.
    assert failed() - before <= 15
    emulator.set_faults(fail_500=0.0)
    assert client.flush(10)
    assert client.stats()["sent"] == 200
    assert len(emulator.state.events("api_calls")) == 200
