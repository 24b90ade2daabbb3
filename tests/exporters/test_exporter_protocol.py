"""The public exporter protocol: ``meterstream.Exporter`` and what the client does with it."""

from __future__ import annotations

import json
import threading
import types
from collections.abc import Mapping
from typing import Any

import pytest

import meterstream
from meterstream import EventBatch, Exporter, MeterClient

WAIT = 30.0  # generous: a loaded 2-core machine


class Collecting(Exporter):
    """Only ``export``: what a user's exporter needs at the least."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []
        self.names: list[list[str]] = []
        self.sizes: list[int] = []

    def export(self, events: EventBatch, batch_id: str = "") -> None:
        self.sizes.append(len(events))
        self.names.append(events.event_names())
        self.bodies.append(events.to_json())
        self.seen.extend(events)


def test_an_exporter_must_define_export() -> None:
    with pytest.raises(TypeError):
        Exporter()  # type: ignore[abstract]


def test_the_defaults_of_the_protocol() -> None:
    exporter = Collecting()
    assert exporter.max_concurrency == 1
    assert dict(exporter.stats()) == {}
    exporter.after_fork_in_child()
    exporter.close()
    exporter.shutdown()  # neither overridden: no endless alias loop


def test_an_exporter_with_only_export_serves_a_client() -> None:
    exporter = Collecting()
    client = MeterClient(exporter=exporter)
    try:
        client.record("api_call", 2, customer="cus_1", dimensions={"model": "small"})
        client.record("tokens", 5, customer="cus_2")
        assert client.flush(WAIT)
        stats = client.stats()
    finally:
        client.shutdown(WAIT)
    assert stats["sent"] == 2
    assert stats["sessions_opened"] == 0 and stats["requests"] == 0
    # The batch's stable surface agrees with itself: iteration, to_json, names, len.
    assert sum(exporter.sizes) == 2
    assert [name for names in exporter.names for name in names] == ["api_call", "tokens"]
    from_json = [event for body in exporter.bodies for event in json.loads(body)["events"]]
    assert from_json == exporter.seen
    assert exporter.seen[0]["payload"] == {
        "stripe_customer_id": "cus_1",
        "value": "2",
        "model": "small",
    }
    assert set(exporter.seen[0]) == {"identifier", "event_name", "timestamp", "payload"}


def test_stats_of_the_exporter_feed_the_client_stats() -> None:
    class Counting(Collecting):
        def stats(self) -> Mapping[str, int]:
            return types.MappingProxyType({"requests": len(self.sizes), "sessions_opened": 7})

    client = MeterClient(exporter=Counting())
    try:
        client.record("api_call", customer="cus_1")
        assert client.flush(WAIT)
        stats = client.stats()
    finally:
        client.shutdown(WAIT)
    assert stats["requests"] == 1
    assert stats["sessions_opened"] == 7


class Meeting(Exporter):
    """Each export waits until *parties* exports are in progress together."""

    def __init__(self, concurrency: int, parties: int) -> None:
        self.max_concurrency = concurrency
        self._barrier = threading.Barrier(parties)
        self.met = 0
        self._lock = threading.Lock()

    def export(self, events: EventBatch, batch_id: str = "") -> None:
        try:
            self._barrier.wait(WAIT)
        except threading.BrokenBarrierError:
            raise meterstream.RetryableExportError("not met") from None
        with self._lock:
            self.met += 1


def test_max_concurrency_exports_run_at_once_on_different_threads() -> None:
    exporter = Meeting(concurrency=3, parties=3)
    client = MeterClient(exporter=exporter, batch_size=1)
    try:
        for n in range(3):
            client.record("api_call", customer=f"cus_{n}")
        assert client.flush(WAIT + 10)
    finally:
        client.shutdown(WAIT)
    assert exporter.met == 3


class Overlap(Exporter):
    """Counts the most calls of export seen at once."""

    def __init__(self) -> None:
        self.active = 0
        self.most = 0
        self.calls = 0
        self._lock = threading.Lock()
        self._pause = threading.Event()

    def export(self, events: EventBatch, batch_id: str = "") -> None:
        with self._lock:
            self.active += 1
            self.calls += 1
            self.most = max(self.most, self.active)
        self._pause.wait(0.005)  # some work, so that a second sender could overlap
        with self._lock:
            self.active -= 1


def test_the_default_max_concurrency_exports_one_batch_at_a_time() -> None:
    exporter = Overlap()
    client = MeterClient(exporter=exporter, batch_size=1)
    try:
        for n in range(30):
            client.record("api_call", customer=f"cus_{n}")
        assert client.flush(WAIT)
    finally:
        client.shutdown(WAIT)
    assert exporter.calls == 30
    assert exporter.most == 1


class Closing(Collecting):
    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class ShuttingDown(Collecting):
    """Written against the former name of ``close``."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    def shutdown(self) -> None:
        self.closed += 1


@pytest.mark.parametrize("kind", [Closing, ShuttingDown])
def test_the_client_closes_its_exporter_once_at_shutdown(kind: type[Closing]) -> None:
    exporter = kind()
    client = MeterClient(exporter=exporter)
    client.record("api_call", customer="cus_1")
    assert client.shutdown(WAIT)
    assert exporter.seen and exporter.closed == 1
    client.shutdown(WAIT)
    assert exporter.closed == 1


@pytest.mark.parametrize("kind", [Closing, ShuttingDown])
def test_close_and_shutdown_are_one_method_under_two_names(kind: type[Closing]) -> None:
    exporter = kind()
    exporter.close()
    exporter.shutdown()
    assert exporter.closed == 2


def test_an_exporter_overriding_both_names_calling_super_closes_once() -> None:
    class Both(Closing):
        def close(self) -> None:
            super().close()
            Exporter.close(self)

        def shutdown(self) -> None:
            self.close()
            Exporter.shutdown(self)

    exporter = Both()
    exporter.shutdown()
    assert exporter.closed == 1


def test_the_stripe_exporter_keeps_shutdown_as_an_alias_of_close() -> None:
    from meterstream._exporters.stripe import StripeExporter

    client = MeterClient(
        api_key="sk_test_protocol", api_base="http://127.0.0.1:9", stream_base="http://127.0.0.1:9"
    )
    try:
        exporter = client.exporter
        assert isinstance(exporter, StripeExporter)
        assert exporter.max_concurrency == client.settings.max_concurrent_requests
        assert set(exporter.stats()) == {"sessions_opened", "requests"}
        exporter.shutdown()
        with pytest.raises(meterstream.DeliveryError, match="shut down"):
            exporter.export(EventBatch.of([]), "b")
    finally:
        client.shutdown(0)


def test_an_object_that_is_not_an_exporter_is_refused() -> None:
    class Lookalike:
        def export(self, events: EventBatch, batch_id: str = "") -> None: ...

    with pytest.raises(meterstream.ConfigurationError, match="exporter"):
        MeterClient(exporter=Lookalike())
