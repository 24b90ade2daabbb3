"""Delivery comes back when the server does, even while some requests keep failing (issue 24).

The soak run of the issue, at a tenth of its scale: default settings, events
recorded at a steady rate, 30% of stream requests answered 500 throughout,
then an outage (connections refused, then requests held unanswered). With
probes spaced up to ``retry_max_delay`` (20 s) and each probe that met one of
the background 500s doubling that spacing, nothing was delivered for tens of
seconds after the server answered again. The full-scale measurement is
``benchmarks/bench_recovery.py`` (docs/performance.md).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import meterstream
from helpers.poll import wait_for
from meterstream._delivery.pacing import PROBE_MAX_DELAY, Backoff, Pacer
from meterstream.emulator import Emulator

RATE = 200  # events a second
REFUSED = 8.0  # seconds of connections refused
HANGING = 2.0  # then seconds of requests held unanswered
#: The server answers again; within this long, a second's worth of events is sent.
RESUME_WITHIN = 5.0


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"auto_create_meters": True, "seed": 24}


def test_probes_stay_close_together_however_long_the_outage() -> None:
    # rng = 1.0: every delay at its ceiling.
    pacer = Pacer(Backoff(0.5, 20.0, rng=lambda: 1.0), broad=8)
    for _ in range(200):
        pacer.failed()
    assert pacer.closed
    stop = threading.Event()
    assert pacer.wait_turn(stop)  # the first probe goes once its time comes
    spacing = pacer._open_at - time.monotonic()
    assert 0 < spacing <= PROBE_MAX_DELAY
    # A batch's own backoff still reaches retry_max_delay.
    assert pacer.retry_delay(1) == 20.0


@pytest.mark.slow
def test_delivery_resumes_within_seconds_of_an_outage_ending_despite_background_500s(
    emulator: Emulator,
) -> None:
    # The default retry settings: the delivery folder's fast retries would hide the pace.
    client = meterstream.MeterClient(
        api_key="sk_test_recovery", api_base=emulator.api_base, stream_base=emulator.stream_base
    )
    stop = threading.Event()
    recorded = [0]

    def produce() -> None:
        started = time.monotonic()
        with meterstream.customer("cus_recovery"):
            while not stop.wait(0.01):
                due = int((time.monotonic() - started) * RATE)
                for _ in range(due - recorded[0]):
                    client.record("api_calls", 1)
                recorded[0] = due

    producer = threading.Thread(target=produce, daemon=True)
    try:
        emulator.set_faults(fail_500=0.3)
        producer.start()
        assert wait_for(lambda: client.stats()["sent"] >= RATE, timeout=20)
        emulator.set_faults(hang=True)  # held first: nothing slips through in between
        emulator.refuse_connections(True)
        assert not stop.wait(REFUSED)
        emulator.refuse_connections(False)
        assert not stop.wait(HANGING)
        emulator.set_faults(hang=False)
        ended = time.monotonic()
        sent_at_end = client.stats()["sent"]
        resumed = wait_for(
            lambda: client.stats()["sent"] >= sent_at_end + RATE, timeout=RESUME_WITHIN
        )
        took = time.monotonic() - ended
        assert resumed, f"nothing much sent {took:.1f} s after the outage: {client.stats()}"
        stop.set()
        producer.join(10)
        emulator.set_faults(fail_500=0.0)
        assert client.flush(60)
    finally:
        stop.set()
        producer.join(10)
        stats = client.stats()
        client.shutdown(5)
    assert stats["sent"] == recorded[0] and stats["dropped_queue_full"] == 0, stats
    assert emulator.state.total("api_calls", "cus_recovery").count == recorded[0]
