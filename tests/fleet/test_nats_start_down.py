"""exporter="nats" when NATS is down at start: with a spool, the app keeps metering."""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

import meterstream
from helpers.fleet import read_stream, wait_for
from helpers.nats_server import NatsServer
from helpers.ports import free_port
from meterstream._fleet.exporter import NatsExporter
from meterstream._fleet.nats import NatsOptions
from meterstream._record.events import EventBatch
from meterstream.errors import ConfigurationError

pytestmark = pytest.mark.slow


def test_with_a_spool_an_app_started_while_nats_is_down_records_and_publishes_later(
    nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nats_server.kill()
    with caplog.at_level(logging.WARNING, logger="meterstream"):
        client = meterstream.MeterClient(
            exporter="nats",
            nats_url=nats_server.url,
            spool_path=str(tmp_path / "spool.db"),
            request_timeout=1.0,
            retry_initial_delay=0.05,
            retry_max_delay=0.5,
            max_queue_size=50,
        )
    try:
        assert "cannot connect to NATS" in caplog.text
        assert "wait in the spool" in caplog.text
        for i in range(500):
            client.record("api_calls", customer="cus_1", identifier=f"early-{i}")
        assert not client.flush(1.0)
        assert client.stats()["dropped"] == 0
        assert client.stats()["spool_pending"] == 500
        nats_server.start()
        assert client.flush(90)
        assert client.stats()["spool_pending"] == 0
        assert client.stats()["published"] == 500
    finally:
        client.shutdown(5)
    seen = Counter(
        m.headers["Nats-Msg-Id"] for m in read_stream(nats_server.url, "METERSTREAM.events.>")
    )
    assert set(seen) == {f"early-{i}" for i in range(500)}
    assert max(seen.values()) == 1


def test_without_a_spool_nats_down_at_start_is_a_configuration_error(
    nats_server: NatsServer,
) -> None:
    nats_server.kill()
    with pytest.raises(ConfigurationError, match="nats_url: cannot connect to NATS"):
        meterstream.MeterClient(exporter="nats", nats_url=nats_server.url)


def test_batches_in_flight_when_nats_comes_up_share_one_connection(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    nats_server.kill()
    monitor = free_port()
    server = NatsServer(tmp_path / "js-late", port=nats_server.port, extra=("-m", str(monitor)))
    exporter = NatsExporter(
        NatsOptions(server.url, connect_timeout=1.0), request_timeout=5.0, wait_for_server=True
    )
    try:
        server.start()
        batches = [
            EventBatch.of(
                [
                    {
                        "identifier": f"b{n}-{i}",
                        "event_name": "api_calls",
                        "timestamp": "2026-11-30T12:00:00Z",
                        "payload": {"stripe_customer_id": "cus_1", "value": "1"},
                    }
                    for i in range(50)
                ]
            )
            for n in range(4)
        ]
        errors: list[BaseException] = []

        def send(batch: EventBatch) -> None:
            try:
                exporter.export(batch)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=send, args=(batch,)) for batch in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        assert wait_for(lambda: _connections(monitor) == 1), _connections(monitor)
        assert exporter.stats()["published"] == 200
    finally:
        exporter.shutdown()
        server.stop()


def _connections(monitor: int) -> int:
    """Client connections the server has, by its monitoring endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/connz", timeout=5) as answer:
            return int(json.load(answer)["num_connections"])
    except OSError:
        return -1
