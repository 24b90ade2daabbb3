"""The relay's OpenTelemetry counters agree with its stats()."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import meterstream
from helpers.fleet import RelayThread, metric_sums, publish_raw, wait_for
from helpers.nats_server import NatsServer
from meterstream.emulator import Emulator


def test_relay_counters_are_opentelemetry_metrics(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    client = meterstream.MeterClient(exporter="nats", nats_url=nats_server.url)
    try:
        for i in range(120):
            client.record("api_calls", customer="cus_1", identifier=f"m-{i}")
        assert client.flush(30)
    finally:
        client.shutdown(5)
    publish_raw(nats_server.url, "METERSTREAM.events.api_calls", [b"{}"])
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    relay = RelayThread(nats_server.url, emulator, meter_provider=provider).start()
    try:
        assert wait_for(lambda: relay.relay.stats()["sent"] >= 120)
        assert wait_for(lambda: relay.relay.stats()["dead_lettered"] >= 1)
    finally:
        relay.stop()
        sums = metric_sums(reader)
        provider.shutdown()
    stats = relay.relay.stats()
    assert sums["meterstream.relay.sent"] == stats["sent"] == 120
    assert sums["meterstream.relay.fetched"] == stats["fetched"] == 121
    assert sums["meterstream.relay.dead_lettered"] == stats["dead_lettered"] == 1
    assert sums["meterstream.relay.invalid"] == stats["invalid"] == 1
    assert sums["meterstream.relay.requests"] == stats["requests"]
