"""``record()``, the exporters, ``flush()`` and ``stats()`` of a client."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

import meterstream
from helpers.recorded import CUS, events_of, values

# -- record() ----------------------------------------------------------------------------


def test_record_with_every_option(memory_client: meterstream.MeterClient) -> None:
    when = datetime.now(timezone.utc).replace(microsecond=250_000) - timedelta(days=2)
    meterstream.record(
        "api_calls",
        Decimal("2.5"),
        customer="cus_r",
        identifier="evt_1",
        dimensions={"model": "m1"},
        timestamp=when,
    )
    assert events_of(memory_client) == [
        {
            "identifier": "evt_1",
            "event_name": "api_calls",
            "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S") + ".250Z",
            "payload": {"stripe_customer_id": "cus_r", "value": "2.5", "model": "m1"},
        }
    ]


def test_record_timestamp_as_unix_seconds(memory_client: meterstream.MeterClient) -> None:
    seconds = int(time.time()) - 3600
    meterstream.record("calls", customer=CUS, timestamp=seconds)
    expected = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert events_of(memory_client)[0]["timestamp"] == expected


def test_record_timestamp_in_another_timezone_is_sent_in_utc(
    memory_client: meterstream.MeterClient,
) -> None:
    plus_two = timezone(timedelta(hours=2))
    when = datetime.now(plus_two).replace(microsecond=0) - timedelta(hours=1)
    meterstream.record("calls", customer=CUS, timestamp=when)
    expected = when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert events_of(memory_client)[0]["timestamp"] == expected


def test_record_numeric_string_value(memory_client: meterstream.MeterClient) -> None:
    meterstream.record("calls", "12.50", customer=CUS)
    assert values(memory_client) == ["12.5"]


def test_record_on_a_client_goes_to_that_client_only() -> None:
    default = meterstream.configure(exporter="memory")
    other = meterstream.MeterClient(exporter="memory")
    try:
        other.record("calls", 2, customer=CUS)
        meterstream.record("calls", 3, customer=CUS)
        assert values(other) == ["2"]
        assert values(default) == ["3"]
    finally:
        other.shutdown(0)


def test_events_keep_their_recording_order(memory_client: meterstream.MeterClient) -> None:
    with meterstream.customer(CUS):
        for i in range(250):
            meterstream.record("calls", i)
    assert values(memory_client) == [str(i) for i in range(250)]


# -- exporters, flush and stats ----------------------------------------------------------


def test_memory_exporter_clear(memory_client: meterstream.MeterClient) -> None:
    meterstream.record("calls", customer=CUS)
    assert len(events_of(memory_client)) == 1
    memory_client.exporter.clear()  # type: ignore[attr-defined]
    assert memory_client.exporter.events == []  # type: ignore[attr-defined]
    meterstream.record("calls", 2, customer=CUS)
    assert values(memory_client) == ["2"]


def test_flush_returns_true(memory_client: meterstream.MeterClient) -> None:
    meterstream.record("calls", customer=CUS)
    assert meterstream.flush() is True
    assert memory_client.flush(1.0) is True


def test_flush_with_nothing_recorded_returns_true(memory_client: meterstream.MeterClient) -> None:
    assert meterstream.flush(1.0) is True


def test_stats_before_and_after_flush() -> None:
    client = meterstream.configure(exporter="memory", flush_interval=3600)
    with meterstream.customer(CUS):
        for _ in range(3):
            meterstream.record("calls")
    before = meterstream.stats()
    assert (before["recorded"], before["queued"], before["memory"]) == (3, 3, 0)
    assert client.flush(5.0)
    after = meterstream.stats()
    assert (after["recorded"], after["queued"], after["memory"]) == (3, 0, 3)


def test_stats_count_drops_by_reason(memory_client: meterstream.MeterClient) -> None:
    with meterstream.customer(CUS):
        meterstream.record("calls")
        meterstream.record("calls")
        meterstream.record("calls", float("nan"))
    meterstream.record("calls")  # no customer
    assert memory_client.flush(5.0)
    stats = meterstream.stats()
    expected = {
        "recorded": 2,
        "queued": 0,
        "sent": 0,
        "memory": 2,
        "retried": 0,
        "failed": 0,
        "dropped": 2,
        "failed_rejected": 0,
        "failed_retries_exhausted": 0,
        "dropped_queue_full": 0,
        "dropped_shutdown": 0,
        "dropped_invalid": 1,
        "dropped_missing_customer": 1,
        "sessions_opened": 0,
        "requests": 0,
    }
    assert {key: stats[key] for key in expected} == expected


def test_record_after_shutdown_is_dropped_and_counted(
    memory_client: meterstream.MeterClient,
) -> None:
    assert memory_client.shutdown(1.0)
    meterstream.record("calls", customer=CUS)
    assert memory_client.stats()["dropped_shutdown"] == 1
    assert memory_client.exporter.events == []  # type: ignore[attr-defined]


def test_log_exporter_writes_one_compact_json_line_per_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = meterstream.configure(exporter="log")
    with caplog.at_level(logging.INFO, logger="meterstream"):
        meterstream.record("calls", 2, customer=CUS, identifier="id_1")
        meterstream.record("calls", 3, customer=CUS, identifier="id_2")
        assert client.flush(5.0)
    lines = [r for r in caplog.records if r.name == "meterstream"]
    assert [r.levelno for r in lines] == [logging.INFO, logging.INFO]
    decoded = []
    for record in lines:
        message = record.getMessage()
        assert message.startswith("meter event ")
        text = message[len("meter event ") :]
        event = json.loads(text)
        assert text == json.dumps(event, separators=(",", ":"))
        decoded.append(event)
    assert [(e["identifier"], e["payload"]["value"]) for e in decoded] == [
        ("id_1", "2"),
        ("id_2", "3"),
    ]


def test_none_exporter_discards_and_counts_under_none() -> None:
    client = meterstream.configure(exporter="none")
    meterstream.record("calls", customer=CUS)
    assert client.flush(5.0)
    assert client.stats()["none"] == 1
    assert client.stats()["sent"] == 0
    assert not hasattr(client.exporter, "events")
