"""An event name that no active meter has is warned about once, before its
events are sent, and counted (``events_without_meter``)."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

import meterstream
from meterstream._client import meter_names
from meterstream._exporters.memory import MemoryExporter
from meterstream._record.events import EventBatch
from meterstream.emulator import Emulator

KEY = "sk_test_meter_names"


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"meters": ["searches", "old_searches"]}


class _Sent(logging.Handler):
    """Keeps each WARNING with how many events the emulator had by then."""

    def __init__(self, emulator: Emulator) -> None:
        super().__init__(logging.WARNING)
        self.emulator = emulator
        self.seen: list[tuple[str, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.getMessage(), len(self.emulator.state.events())))


def _deactivate(emulator: Emulator, event_name: str) -> None:
    meter = next(m for m in emulator.state.meters() if m["event_name"] == event_name)
    answer = httpx.post(
        f"{emulator.url}/v1/billing/meters/{meter['id']}/deactivate",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "inactive"


def test_a_name_without_an_active_meter_is_warned_once_before_its_events_go(
    emulator: Emulator,
) -> None:
    _deactivate(emulator, "old_searches")
    handler = _Sent(emulator)
    logger = logging.getLogger("meterstream")
    logger.addHandler(handler)
    client = meterstream.MeterClient(
        api_key=KEY, api_base=emulator.url, stream_base=emulator.url, batch_size=10
    )
    try:
        for _ in range(3):
            client.record("searches", customer="cus_1")
            client.record("serches", customer="cus_1")  # a typo: no meter at all
            client.record("old_searches", customer="cus_1")  # its meter is inactive
        assert client.flush(10)
        for _ in range(2):  # a later batch: no second warning
            client.record("serches", customer="cus_2")
        assert client.flush(10)
        stats = client.stats()
    finally:
        client.shutdown(5)
        logger.removeHandler(handler)
    warned = [(text, sent) for text, sent in handler.seen if "no active meter" in text]
    assert [text.split("'")[1] for text, _ in warned] == ["old_searches", "serches"]
    assert all(sent == 0 for _, sent in warned)  # before any event was sent
    assert stats["sent"] == 11
    assert stats["events_without_meter"] == 3 + 3 + 2


def test_names_with_an_active_meter_are_not_warned_about(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    client = meterstream.MeterClient(api_key=KEY, api_base=emulator.url, stream_base=emulator.url)
    try:
        client.record("searches", customer="cus_1")
        assert client.flush(10)
        assert client.stats()["events_without_meter"] == 0
    finally:
        client.shutdown(5)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_meter_made_after_the_first_read_is_found() -> None:
    made: list[dict[str, Any]] = []

    class Exporter(MemoryExporter):
        reads = 0

        def meters(self) -> list[dict[str, Any]]:
            Exporter.reads += 1
            return list(made)

    now = [0.0]
    names = meter_names.MeterNames(Exporter(), clock=lambda: now[0])

    def batch(name: str) -> EventBatch:
        return EventBatch.of([{"event_name": name, "payload": {}}])

    names.before_send(batch("a"))  # read once: "a" is missing
    assert names.events_without_meter == 1
    made.append({"event_name": "b", "status": "active"})
    now[0] += meter_names.REREAD_AFTER
    names.before_send(batch("b"))  # not in the list read: read again
    assert Exporter.reads == 2
    assert names.events_without_meter == 1


def test_meters_that_cannot_be_read_leave_the_names_unchecked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Exporter(MemoryExporter):
        reads = 0

        def meters(self) -> list[dict[str, Any]]:
            Exporter.reads += 1
            raise meterstream.DeliveryError("forbidden", reason="rejected")

    now = [0.0]
    names = meter_names.MeterNames(Exporter(), clock=lambda: now[0])
    with caplog.at_level(logging.INFO, "meterstream"):
        for _ in range(5):
            names.before_send(EventBatch.of([{"event_name": "a", "payload": {}}]))
    assert Exporter.reads == 1  # not once a batch
    assert names.events_without_meter == 0
    assert [r.levelno for r in caplog.records] == [logging.INFO]
