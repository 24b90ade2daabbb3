"""The buffer: its bound, the overflow policies, flush markers and exact counting.

To fill the buffer deterministically the clients here use ``flush_interval=3600``
and fewer events than ``batch_size``: the flusher only wakes for a full batch,
a flush, or the interval, so nothing drains until the test calls ``flush()``.
Where the flusher must be busy instead, a gated exporter holds it inside
``export`` until the test opens the gate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, Callable

import pytest

import meterstream
from helpers.clients import ClientFactory
from helpers.poll import wait_for
from meterstream._delivery.buffer import Wake
from meterstream._exporters.base import Exporter

CUS = "cus_buf"
WAIT = 10.0  # an upper bound for things that happen at once when the code is right


def sent_values(client: meterstream.MeterClient) -> list[str]:
    assert client.flush(5.0)
    events = client.exporter.events  # type: ignore[attr-defined]
    return [e["payload"]["value"] for e in events]


class GatedExporter(Exporter):
    """Holds the flusher inside ``export`` until ``gate`` is set."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def export(self, events: list[dict[str, Any]], batch_id: str = "") -> None:
        self.entered.set()
        self.gate.wait(WAIT)
        self.events.extend(events)


@pytest.fixture
def client_settings() -> dict[str, Any]:
    return {"exporter": "memory", "flush_interval": 3600}


@pytest.fixture(autouse=True)
def _open_gates(make_client: ClientFactory) -> Iterator[None]:
    """After the test, let go of an export a gate still holds, so shutdown can end."""
    yield
    for client in make_client.clients:
        exporter = client.exporter
        if isinstance(exporter, (GatedExporter, CountingGate)):
            exporter.gate.set()


# -- drop_newest / drop_oldest ---------------------------------------------------------------


def test_drop_newest_keeps_the_first_events(make_client: Callable[..., Any]) -> None:
    client = make_client(max_queue_size=3, overflow="drop_newest")
    for i in range(5):
        client.record("calls", i, customer=CUS)
    before = client.stats()
    assert (before["queued"], before["dropped_queue_full"]) == (3, 2)
    assert sent_values(client) == ["0", "1", "2"]
    stats = client.stats()
    assert stats["recorded"] == 3
    assert stats["memory"] == 3
    assert stats["dropped_queue_full"] == 2
    assert stats["dropped"] == 2
    assert stats["queued"] == 0


def test_drop_oldest_keeps_the_last_events(make_client: Callable[..., Any]) -> None:
    client = make_client(max_queue_size=3, overflow="drop_oldest")
    for i in range(5):
        client.record("calls", i, customer=CUS)
    before = client.stats()
    assert (before["queued"], before["dropped_queue_full"]) == (3, 2)
    assert sent_values(client) == ["2", "3", "4"]
    stats = client.stats()
    # drop_oldest discards events that had been accepted: they count as recorded.
    assert stats["recorded"] == 5
    assert stats["memory"] == 3
    assert stats["dropped_queue_full"] == 2
    assert stats["queued"] == 0


def test_decorated_calls_obey_the_bound_too(make_client: Callable[..., Any]) -> None:
    client = make_client(max_queue_size=2, overflow="drop_newest")

    @client.meter("calls", value=7)
    def fn() -> str:
        return "ran"

    with meterstream.customer(CUS):
        assert [fn() for _ in range(4)] == ["ran"] * 4
    assert sent_values(client) == ["7", "7"]
    assert client.stats()["dropped_queue_full"] == 2


def test_queue_full_is_logged_once(
    make_client: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(max_queue_size=1)
    with caplog.at_level(logging.WARNING, logger="meterstream"):
        for i in range(50):
            client.record("calls", i, customer=CUS)
    lines = [r for r in caplog.records if r.name == "meterstream"]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    assert "full" in lines[0].getMessage()
    assert client.stats()["dropped_queue_full"] == 49


def test_buffer_accepts_again_after_a_flush(make_client: Callable[..., Any]) -> None:
    client = make_client(max_queue_size=2)
    for i in range(3):
        client.record("calls", i, customer=CUS)
    assert client.flush(5.0)
    for i in range(3, 5):
        client.record("calls", i, customer=CUS)
    assert sent_values(client) == ["0", "1", "3", "4"]
    assert client.stats()["dropped_queue_full"] == 1


# -- block ----------------------------------------------------------------------------------------


def test_block_releases_a_producer_when_room_appears(make_client: Callable[..., Any]) -> None:
    client = make_client(max_queue_size=3, overflow="block", block_timeout=WAIT)
    for i in range(3):
        client.record("calls", i, customer=CUS)
    returned = threading.Event()

    def produce() -> None:
        client.record("calls", 3, customer=CUS)
        returned.set()

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        # The buffer is full and nothing drains it: the producer must still be waiting.
        assert not returned.wait(0.1)
        assert client.flush(5.0)  # drains the three events: room appears
        assert returned.wait(WAIT)
    finally:
        producer.join(WAIT)
    assert sent_values(client) == ["0", "1", "2", "3"]
    stats = client.stats()
    assert stats["dropped_queue_full"] == 0
    assert stats["recorded"] == stats["memory"] == 4


def test_block_gives_up_after_block_timeout(make_client: Callable[..., Any]) -> None:
    client = make_client(max_queue_size=3, overflow="block", block_timeout=0.2)
    for i in range(3):
        client.record("calls", i, customer=CUS)
    started = time.monotonic()
    client.record("calls", 3, customer=CUS)
    waited = time.monotonic() - started
    assert 0.19 <= waited < WAIT
    assert client.stats()["dropped_queue_full"] == 1
    assert sent_values(client) == ["0", "1", "2"]


def test_block_with_a_busy_sender_waits_for_it(make_client: Callable[..., Any]) -> None:
    exporter = GatedExporter()
    client = make_client(
        exporter=exporter, max_queue_size=1, batch_size=1, overflow="block", block_timeout=WAIT
    )
    client.record("calls", 0, customer=CUS)
    assert exporter.entered.wait(WAIT)  # the flusher holds event 0 inside export()
    client.record("calls", 1, customer=CUS)  # fills the buffer
    returned = threading.Event()

    def produce() -> None:
        client.record("calls", 2, customer=CUS)
        returned.set()

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        assert not returned.wait(0.1)
        exporter.gate.set()
        assert returned.wait(WAIT)
    finally:
        exporter.gate.set()
        producer.join(WAIT)
    assert client.flush(5.0)
    assert [e["payload"]["value"] for e in exporter.events] == ["0", "1", "2"]
    assert client.stats()["dropped_queue_full"] == 0


# -- flush markers ---------------------------------------------------------------------------------


def test_flush_marker_survives_drop_oldest(make_client: Callable[..., Any]) -> None:
    exporter = GatedExporter()
    client = make_client(exporter=exporter, max_queue_size=2, batch_size=1, overflow="drop_oldest")
    client.record("calls", 0, customer=CUS)
    assert exporter.entered.wait(WAIT)  # event 0 is in flight, the flusher is busy
    client.record("calls", 1, customer=CUS)
    client.record("calls", 2, customer=CUS)

    flushed: list[bool] = []
    flusher = threading.Thread(target=lambda: flushed.append(client.flush(WAIT)))
    flusher.start()
    try:
        # Private, but the only way to know flush() has put its marker in the buffer.
        assert wait_for(lambda: client._buffer.has_markers, WAIT)
        # Three more events push out 1, 2 and 3; the marker must stay in the queue.
        for i in range(3, 6):
            client.record("calls", i, customer=CUS)
        assert client.stats()["dropped_queue_full"] == 3
        assert flushed == []
        exporter.gate.set()
        flusher.join(WAIT)
    finally:
        exporter.gate.set()
        flusher.join(WAIT)
    assert flushed == [True]
    assert client.flush(5.0)
    assert [e["payload"]["value"] for e in exporter.events] == ["0", "4", "5"]
    stats = client.stats()
    assert stats["sent"] == 3
    assert stats["queued"] == 0
    assert stats["recorded"] == 6


def test_flush_does_not_count_as_a_queued_event(make_client: Callable[..., Any]) -> None:
    exporter = GatedExporter()
    client = make_client(exporter=exporter, batch_size=1)
    client.record("calls", 0, customer=CUS)
    assert exporter.entered.wait(WAIT)
    assert client.flush(0.01) is False  # event 0 is still in flight
    stats = client.stats()
    assert stats["queued"] == 1
    assert stats["recorded"] == 1
    exporter.gate.set()
    assert client.flush(5.0)
    assert client.stats()["queued"] == 0


# -- exact counting --------------------------------------------------------------------------------


def test_stats_are_exact_after_flush(make_client: Callable[..., Any]) -> None:
    client = make_client(batch_size=7, flush_interval=0.05)
    for i in range(1000):
        client.record("calls", i, customer=CUS)
    assert client.flush(5.0)
    stats = client.stats()
    assert stats["recorded"] == 1000
    assert stats["memory"] == 1000
    assert stats["queued"] == 0
    assert stats["dropped"] == 0
    assert stats["failed"] == 0
    assert len(client.exporter.events) == 1000  # type: ignore[attr-defined]


def test_recorded_equals_settled_plus_queued(make_client: Callable[..., Any]) -> None:
    client = make_client(max_queue_size=10, overflow="drop_oldest")
    for i in range(25):
        client.record("calls", i, customer=CUS)
    stats = client.stats()
    assert stats["queued"] == 10
    assert stats["recorded"] == stats["queued"] + stats["dropped_queue_full"] + stats["memory"]
    assert client.flush(5.0)
    stats = client.stats()
    assert stats["recorded"] == 25
    assert stats["memory"] == 10


THREADS = 8
PER_THREAD = 5_000


def run_in_threads(work: Callable[[int], None]) -> None:
    start = threading.Barrier(THREADS, timeout=WAIT)
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            start.wait()
            work(t)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []


def test_concurrent_records_are_delivered_exactly_once(make_client: Callable[..., Any]) -> None:
    client = make_client(flush_interval=0.05)

    def work(t: int) -> None:
        for i in range(PER_THREAD):
            client.record("calls", i, customer=CUS, identifier=f"t{t}-{i}")

    run_in_threads(work)
    assert client.flush(10.0)
    events = client.exporter.events  # type: ignore[attr-defined]
    counts = Counter(e["identifier"] for e in events)
    expected = {f"t{t}-{i}" for t in range(THREADS) for i in range(PER_THREAD)}
    assert set(counts) == expected
    assert max(counts.values()) == 1
    stats = client.stats()
    assert stats["recorded"] == stats["memory"] == THREADS * PER_THREAD
    assert stats["queued"] == 0


def test_concurrent_records_get_unique_generated_identifiers(
    make_client: Callable[..., Any],
) -> None:
    client = make_client(flush_interval=0.05)

    def work(t: int) -> None:
        with meterstream.customer(f"cus_{t}"):
            for i in range(PER_THREAD):
                client.record("calls", i)

    run_in_threads(work)
    assert client.flush(10.0)
    events = client.exporter.events  # type: ignore[attr-defined]
    assert len(events) == THREADS * PER_THREAD
    assert len({e["identifier"] for e in events}) == THREADS * PER_THREAD
    per_customer = Counter(e["payload"]["stripe_customer_id"] for e in events)
    assert per_customer == {f"cus_{t}": PER_THREAD for t in range(THREADS)}
    # Each thread's events keep their order.
    for t in range(THREADS):
        mine = [
            e["payload"]["value"]
            for e in events
            if e["payload"]["stripe_customer_id"] == f"cus_{t}"
        ]
        assert mine == [str(i) for i in range(PER_THREAD)]


# -- the wake-up the delivery threads wait on ---------------------------------------------


def _wait_for_sleepers(wake: Wake, n: int) -> None:
    assert wait_for(lambda: len(wake._waiters) >= n, WAIT, 0.001), "the waiters never slept"


def test_wake_set_wakes_the_newest_waiter_only_and_set_all_the_rest() -> None:
    wake = Wake()
    assert not wake.is_set()
    woke: list[tuple[str, bool]] = []
    threads = []
    for name in "abc":  # in this order, each asleep before the next starts

        def wait(name: str = name) -> None:
            woke.append((name, wake.wait(WAIT)))

        threads.append(threading.Thread(target=wait, daemon=True))
        threads[-1].start()
        _wait_for_sleepers(wake, len(threads))
    wake.set()
    threads[2].join(WAIT)
    assert woke == [("c", True)]  # the warmest thread; the others sleep on
    assert len(wake._waiters) == 2
    wake.set_all()
    for thread in threads:
        thread.join(WAIT)
    assert sorted(woke) == [("a", True), ("b", True), ("c", True)]
    assert not wake._waiters


def test_wake_wait_returns_at_once_when_set_and_false_on_timeout() -> None:
    wake = Wake()
    assert wake.wait(0.01) is False
    assert not wake._waiters  # a waiter that timed out is gone
    wake.set()  # nobody waits: the flag keeps it
    assert wake.is_set()
    assert wake.wait(0) is True
    assert wake.wait(WAIT) is True  # still set: wait() does not clear
    wake.clear()
    assert not wake.is_set()
    assert wake.wait(0.01) is False


class CountingGate(Exporter):
    """Holds every ``export`` until ``gate`` is set, counting how many are inside at once."""

    def __init__(self, concurrency: int) -> None:
        self.max_concurrency = concurrency
        self.events: list[dict[str, Any]] = []
        self.gate = threading.Event()
        self.inside = 0
        self.most_inside = 0
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def export(self, events: list[dict[str, Any]], batch_id: str = "") -> None:
        with self.lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self.changed.notify_all()
        self.gate.wait(WAIT)
        with self.lock:
            self.inside -= 1
            self.events.extend(events)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_each_delivery_thread_has_one_batch_out_and_the_rest_wait_in_the_buffer(
    make_client: Callable[..., Any], concurrency: int
) -> None:
    exporter = CountingGate(concurrency)
    client = make_client(exporter=exporter, batch_size=10)
    for i in range(10 * (concurrency + 2)):
        client.record("calls", i, customer=CUS)
    with exporter.changed:
        assert exporter.changed.wait_for(lambda: exporter.inside == concurrency, WAIT)
    # Full batches beyond one per thread stay in the buffer, under its bound.
    assert client.stats()["queued"] == 10 * (concurrency + 2)
    assert len(client._buffer) == 20
    exporter.gate.set()
    assert client.flush(WAIT)
    assert exporter.most_inside == concurrency
    assert sorted(int(e["payload"]["value"]) for e in exporter.events) == list(
        range(10 * (concurrency + 2))
    )
    assert client.stats()["sent"] == 10 * (concurrency + 2)
