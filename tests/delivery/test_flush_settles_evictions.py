"""``flush()`` returns once every event evicted before it reached ``on_delivery_error``.

An event ``drop_oldest`` evicts is settled as a failure: a flush that returns
True has seen it handed over, however slow the callback, on whichever thread
it runs.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import meterstream
from meterstream.emulator import Emulator


def _slow_eviction_callback(
    evicted: list[str], entered: threading.Event, release: threading.Event, hold: float
) -> Callable[[Any, Any], None]:
    """An ``on_delivery_error`` that takes up to *hold* seconds per call (a slow
    database write, say), unless *release* is set first."""

    def on_error(events: Any, error: Any) -> None:
        if error.reason != "queue_full":
            return
        entered.set()
        release.wait(hold)
        evicted.extend(e["identifier"] for e in events)

    return on_error


def test_flush_waits_for_a_slow_eviction_report_in_progress(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    evicted: list[str] = []
    entered, release = threading.Event(), threading.Event()
    client = make_client(
        max_queue_size=10,
        overflow="drop_oldest",
        flush_interval=3600,
        on_delivery_error=_slow_eviction_callback(evicted, entered, release, hold=0.5),
    )
    for n in range(25):
        client.record("api_calls", n, customer="cus_1", identifier=f"id-{n}")
    # The reporter thread holds the first evictions, inside the callback.
    assert entered.wait(10)
    assert client.flush(10)
    assert evicted == [f"id-{n}" for n in range(15)]
    assert [e["identifier"] for e in emulator.state.events("api_calls")] == [
        f"id-{n}" for n in range(15, 25)
    ]


def test_flush_returns_false_while_an_eviction_report_outlasts_its_timeout(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    evicted: list[str] = []
    entered, release = threading.Event(), threading.Event()
    client = make_client(
        max_queue_size=10,
        overflow="drop_oldest",
        flush_interval=3600,
        on_delivery_error=_slow_eviction_callback(evicted, entered, release, hold=30),
    )
    for n in range(25):
        client.record("api_calls", n, customer="cus_1", identifier=f"id-{n}")
    assert entered.wait(10)
    assert not client.flush(0.2)  # the callback still holds evictions: not settled
    release.set()
    assert client.flush(10)
    assert evicted == [f"id-{n}" for n in range(15)]
    stats = client.stats()
    assert stats["dropped_queue_full"] == 15 and stats["sent"] == 10
