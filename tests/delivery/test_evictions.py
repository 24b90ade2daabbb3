"""``drop_oldest`` hands every evicted event to ``on_delivery_error``, apart from delivery."""

from __future__ import annotations

import threading
from typing import Any, Callable

import meterstream
from helpers.poll import wait_for
from meterstream.emulator import Emulator


def test_every_eviction_reaches_the_callback_while_delivery_is_stuck(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    lock = threading.Lock()
    evicted: list[str] = []

    def on_error(events: Any, error: Any) -> None:
        if error.reason == "queue_full":
            with lock:
                evicted.extend(e["identifier"] for e in events)

    client = make_client(
        max_queue_size=100,
        overflow="drop_oldest",
        request_timeout=60,
        on_delivery_error=on_error,
    )
    emulator.set_faults(hang=True)
    for n in range(400):  # a full batch for each of the 4 threads, which hang on it
        client.record("api_calls", 1, customer="cus_1", identifier=f"first-{n}")
        if n % 100 == 99:
            assert wait_for(lambda n=n: client.stats()["requests"] >= 2 + n // 100)
    for n in range(30_000):
        client.record("api_calls", 1, customer="cus_1", identifier=f"id-{n}")
    dropped = client.stats()["dropped_queue_full"]
    assert dropped > 25_000
    assert wait_for(lambda: len(evicted) >= dropped, timeout=20), (len(evicted), dropped)
    assert len(evicted) == len(set(evicted)) == dropped  # each once, none left out
    assert client._buffer.evicted is not None and len(client._buffer.evicted) == 0
    emulator.set_faults(hang=False)
    assert client.flush(20)
    stats = client.stats()
    assert stats["recorded"] == 30_400
    assert stats["sent"] + stats["dropped_queue_full"] == 30_400
