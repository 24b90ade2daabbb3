"""A missing key must not look like billing: ``sent`` counts only what Stripe accepted.

The ``log``, ``memory`` and ``none`` exporters count under their own names,
and running without an API key says so once, at WARNING, at the first record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

import meterstream
from meterstream._exporters.base import EventBatch, Exporter
from meterstream.emulator import Emulator

CUS = "cus_counts"
COUNT_KEYS = ("sent", "log", "memory", "none")


class Recorder(Exporter):
    """A user's own exporter (say, a wrapper delivering to Stripe another way)."""

    def __init__(self) -> None:
        self.received = 0

    def export(self, events: EventBatch, batch_id: str = "") -> None:
        self.received += len(events)


@pytest.fixture
def clients() -> Iterator[list[meterstream.MeterClient]]:
    made: list[meterstream.MeterClient] = []
    yield made
    for client in made:
        client.shutdown(0)


def counts(client: meterstream.MeterClient) -> dict[str, int]:
    stats = client.stats()
    return {key: stats[key] for key in COUNT_KEYS}


@pytest.mark.parametrize("name", ["log", "memory", "none"])
def test_local_exporters_count_under_their_own_name(
    clients: list[meterstream.MeterClient], name: str
) -> None:
    client = meterstream.MeterClient(exporter=name)
    clients.append(client)
    for _ in range(3):
        client.record("calls", customer=CUS)
    assert client.flush(30)
    expected = dict.fromkeys(COUNT_KEYS, 0)
    expected[name] = 3
    assert counts(client) == expected
    stats = client.stats()
    assert stats["recorded"] == 3 and stats["queued"] == 0


def test_the_default_exporter_without_a_key_counts_under_log(
    clients: list[meterstream.MeterClient],
) -> None:
    client = meterstream.MeterClient()
    clients.append(client)
    assert client.settings.exporter == "log"
    client.record("calls", customer=CUS)
    assert client.flush(30)
    assert counts(client) == {"sent": 0, "log": 1, "memory": 0, "none": 0}


def test_stripe_accepted_events_count_as_sent(clients: list[meterstream.MeterClient]) -> None:
    with Emulator(auto_create_meters=True) as emulator:
        client = meterstream.MeterClient(
            api_key="sk_test_counts", api_base=emulator.url, stream_base=emulator.url
        )
        clients.append(client)
        for _ in range(4):
            client.record("calls", customer=CUS)
        assert client.flush(30)
        assert counts(client) == {"sent": 4, "log": 0, "memory": 0, "none": 0}
        client.shutdown(10)


def test_a_users_own_exporter_counts_as_sent(clients: list[meterstream.MeterClient]) -> None:
    exporter = Recorder()
    client = meterstream.MeterClient(exporter=exporter)
    clients.append(client)
    client.record("calls", customer=CUS)
    client.record("calls", customer=CUS)
    assert client.flush(30)
    assert exporter.received == 2
    assert counts(client) == {"sent": 2, "log": 0, "memory": 0, "none": 0}


def warnings_from(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "meterstream" and r.levelno == logging.WARNING]


def test_no_key_warns_once_at_the_first_record(
    clients: list[meterstream.MeterClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="meterstream")
    client = meterstream.MeterClient()
    clients.append(client)
    assert warnings_from(caplog) == []  # not at construction: at the first record
    client.record("calls", customer=CUS)
    metered = client.meter("calls")(lambda: "result")
    with meterstream.customer(CUS):
        for _ in range(50):
            assert metered() == "result"
            client.record("calls")
    assert client.flush(30)
    (warning,) = warnings_from(caplog)
    message = warning.getMessage()
    assert "not sent to Stripe" in message
    assert "STRIPE_API_KEY" in message
    assert not message.startswith("meterstream:")


def test_no_key_warns_once_through_the_module_functions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="meterstream")

    @meterstream.meter("calls")
    def handler() -> str:
        return "ok"

    with meterstream.customer(CUS):
        for _ in range(20):
            assert handler() == "ok"
    assert meterstream.flush(30)
    assert len(warnings_from(caplog)) == 1
    assert meterstream.stats()["log"] == 20
    assert meterstream.stats()["sent"] == 0


def test_no_key_warns_even_when_delivery_started_before_the_first_record(
    clients: list[meterstream.MeterClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="meterstream")
    client = meterstream.MeterClient()
    clients.append(client)
    assert client.flush(30)  # starts delivery: the record path's fast path is open
    metered = client.meter("calls")(lambda: "result")
    with meterstream.customer(CUS):
        assert metered() == "result"
        assert metered() == "result"
    assert client.flush(30)
    assert len(warnings_from(caplog)) == 1
    assert client.stats()["log"] == 2


def test_no_key_warns_in_sync_mode_too(
    clients: list[meterstream.MeterClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="meterstream")
    client = meterstream.MeterClient(sync_mode=True)
    clients.append(client)
    client.record("calls", customer=CUS)
    client.record("calls", customer=CUS)
    assert len(warnings_from(caplog)) == 1
    assert client.stats()["log"] == 2


@pytest.mark.parametrize(
    "settings",
    [
        {"exporter": "log"},
        {"exporter": "memory"},
        {"exporter": "none"},
        {"enabled": False},
    ],
)
def test_a_chosen_exporter_does_not_warn(
    clients: list[meterstream.MeterClient],
    caplog: pytest.LogCaptureFixture,
    settings: dict[str, Any],
) -> None:
    caplog.set_level(logging.WARNING, logger="meterstream")
    client = meterstream.MeterClient(**settings)
    clients.append(client)
    client.record("calls", customer=CUS)
    assert client.flush(30)
    assert warnings_from(caplog) == []


def test_the_log_exporter_from_the_environment_does_not_warn(
    monkeypatch: pytest.MonkeyPatch,
    clients: list[meterstream.MeterClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="meterstream")
    monkeypatch.setenv("METERSTREAM_EXPORTER", "log")
    client = meterstream.MeterClient()
    clients.append(client)
    client.record("calls", customer=CUS)
    assert client.flush(30)
    assert warnings_from(caplog) == []
