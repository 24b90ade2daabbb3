"""The shared pace: quick retries while the server answers, one probe at a time when it does not."""

from __future__ import annotations

import threading
import time

from helpers.delivery import ScriptedExporter
from meterstream import DeliveryError
from meterstream._delivery.pacing import Backoff, Pacer


def pacer(broad: int = 8) -> Pacer:
    # rng = 1.0: every delay at its ceiling, so the levels show.
    return Pacer(Backoff(0.8, 20.0, rng=lambda: 1.0), broad)


def test_isolated_failures_are_retried_quickly_and_broad_ones_back_off() -> None:
    p = pacer()
    p.failed()
    assert p.retry_delay(1) == 0.1  # an eighth of retry_initial_delay
    for _ in range(6):
        p.failed()
    assert p.streak == 7 and p.retry_delay(2) == 0.1 and not p.closed
    p.failed()  # the 8th in a row: failing broadly
    assert p.closed
    assert p.retry_delay(3) == 1.6
    for _ in range(20):
        p.failed()
    assert p.retry_delay(4) == 20.0  # retry_max_delay
    assert p.succeeded() is True  # ended a broad failure
    assert p.streak == 0 and not p.closed
    assert p.succeeded() is False


def test_a_batch_failing_alone_backs_off_by_its_own_attempts_from_the_sixth() -> None:
    p = pacer()
    assert p.retry_delay(1) == p.retry_delay(5) == 0.1
    assert p.retry_delay(6) == 0.2
    assert p.retry_delay(8) == 0.8  # retry_initial_delay
    assert p.retry_delay(11) == 6.4
    assert p.retry_delay(30) == 20.0


def test_retry_after_closes_the_gate_for_that_long_and_a_success_opens_it() -> None:
    p = pacer()
    stop = threading.Event()
    p.failed(retry_after=30.0)
    assert p.closed
    opened = threading.Event()
    waiter = threading.Thread(target=lambda: p.wait_turn(stop) and opened.set())
    waiter.start()
    assert not opened.wait(0.2)  # held by the gate
    p.succeeded()
    assert opened.wait(10)
    waiter.join(10)


def test_a_stop_or_a_drain_releases_senders_waiting_at_the_gate() -> None:
    p = pacer()
    stop = threading.Event()
    p.failed(retry_after=30.0)
    results: list[bool] = []
    waiters = [threading.Thread(target=lambda: results.append(p.wait_turn(stop))) for _ in range(2)]
    for waiter in waiters:
        waiter.start()
    stop.set()
    p.wake()
    for waiter in waiters:
        waiter.join(10)
    assert results == [False, False]
    p.drain()
    assert p.wait_turn(threading.Event()) is True


def test_the_rest_of_a_batch_refused_for_one_event_keeps_identifiers_under_a_new_key() -> None:
    import meterstream

    class RefuseOnce(ScriptedExporter):
        def __init__(self) -> None:
            super().__init__([])
            self.calls: list[tuple[str, list[str]]] = []

        def export(self, events, batch_id=""):  # type: ignore[no-untyped-def]
            self.calls.append((batch_id, [e["identifier"] for e in events]))
            if len(self.calls) == 1:
                raise DeliveryError(
                    "refused", reason="rejected", status=400, param="events[1].payload", index=1
                )

    exporter = RefuseOnce()
    reported: list[tuple[list[str], BaseException]] = []
    client = meterstream.MeterClient(
        exporter=exporter,
        flush_interval=3600,
        on_delivery_error=lambda events, error: reported.append(
            ([e["identifier"] for e in events], error)
        ),
    )
    try:
        for ident in ("a", "b", "c"):
            client.record("api_calls", 1, customer="cus_1", identifier=ident)
        started = time.monotonic()
        assert client.flush(10)
        assert time.monotonic() - started < 5
        (first_key, first), (second_key, second) = exporter.calls
        assert first == ["a", "b", "c"] and second == ["a", "c"]
        assert first_key and second_key and first_key != second_key
        assert [ids for ids, _ in reported] == [["b"]]
        assert reported[0][1].index == 1  # type: ignore[attr-defined]
        assert client.stats()["sent"] == 2 and client.stats()["failed_rejected"] == 1
    finally:
        client.shutdown(0.5)
