"""exporter="nats": events reach JetStream, once by identifier, or a clear error at start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import meterstream
from helpers.fleet import read_stream
from helpers.nats_server import UNAVAILABLE, NatsServer
from meterstream._record.events import EventBatch
from meterstream.errors import ConfigurationError


def test_each_event_is_published_with_its_identifier_as_nats_msg_id(
    nats_server: NatsServer,
) -> None:
    client = meterstream.MeterClient(exporter="nats", nats_url=nats_server.url)
    try:
        for i in range(250):
            client.record("api_calls", value=i, customer=f"cus_{i % 7}")
        client.record("weird name/ü", customer="cus_1")
        assert client.flush(30)
        stats = client.stats()
    finally:
        client.shutdown(5)
    assert stats["published"] == 251
    assert stats["sent"] == 0  # JetStream accepted them, Stripe has not yet
    msgs = read_stream(nats_server.url, "METERSTREAM.events.>")
    assert len(msgs) == 251
    for msg in msgs:
        body = json.loads(msg.data)
        assert msg.headers["Nats-Msg-Id"] == body["identifier"]
        assert set(body) == {"identifier", "event_name", "timestamp", "payload"}
    assert {json.loads(m.data)["event_name"] for m in msgs} == {"api_calls", "weird name/ü"}


def test_a_retried_batch_is_dropped_by_jetstream_as_a_duplicate(nats_server: NatsServer) -> None:
    from meterstream._fleet.exporter import NatsExporter
    from meterstream._fleet.nats import NatsOptions

    exporter = NatsExporter(NatsOptions(nats_server.url))
    try:
        batch = EventBatch.of(
            [
                {
                    "identifier": f"ev_{i}",
                    "event_name": "api_calls",
                    "timestamp": "2026-11-30T10:00:00.000Z",
                    "payload": {"stripe_customer_id": "cus_1", "value": "1"},
                }
                for i in range(20)
            ]
        )
        exporter.export(batch, "b1")
        exporter.export(batch, "b1")  # the delivery engine's retry after a lost ack
        assert exporter.stats() == {"published": 40, "duplicates": 20}
    finally:
        exporter.shutdown()
    assert len(read_stream(nats_server.url, "METERSTREAM.events.>")) == 20


def test_an_unreachable_server_at_start_is_a_configuration_error_naming_nats_url() -> None:
    with pytest.raises(ConfigurationError, match="nats_url: cannot connect"):
        meterstream.MeterClient(exporter="nats", nats_url="nats://127.0.0.1:1")


@pytest.mark.parametrize("url", ["http://127.0.0.1:4222", "nats://", "nats://h:99999"])
def test_a_malformed_url_names_nats_url(url: str) -> None:
    with pytest.raises(ConfigurationError, match="nats_url"):
        meterstream.MeterClient(exporter="nats", nats_url=url)


def test_the_nats_exporter_needs_a_url() -> None:
    with pytest.raises(ConfigurationError, match="nats_url"):
        meterstream.MeterClient(exporter="nats")


def test_a_missing_credentials_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="nats_credentials: no such file"):
        meterstream.MeterClient(
            exporter="nats",
            nats_url="nats://127.0.0.1:4222",
            nats_credentials=str(tmp_path / "missing.creds"),
        )


@pytest.mark.slow
def test_a_server_that_wants_credentials_names_nats_credentials(tmp_path: Path) -> None:
    if UNAVAILABLE:
        pytest.skip(UNAVAILABLE)
    server = NatsServer(tmp_path / "js", extra=("--user", "app", "--pass", "s3cret")).start()
    try:
        with pytest.raises(ConfigurationError, match="nats_credentials"):
            meterstream.MeterClient(exporter="nats", nats_url=server.url)
        client = meterstream.MeterClient(
            exporter="nats", nats_url=f"nats://app:s3cret@127.0.0.1:{server.port}"
        )
        client.record("api_calls", customer="cus_1")
        assert client.flush(20)
        client.shutdown(5)
    finally:
        server.stop()
