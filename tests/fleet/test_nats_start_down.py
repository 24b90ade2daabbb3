"""exporter="nats" when NATS is down at start: with a spool, the app keeps metering."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

import meterstream
from meterstream.errors import ConfigurationError

from .helpers import read_stream
from .servers import NatsServer

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
