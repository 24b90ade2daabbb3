"""The fold's counters (uses folded, events produced) are OpenTelemetry metrics too."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from helpers.aggregate import create_meter, emulator_totals, expected_totals, publish_uses
from helpers.fleet import RelayThread, metric_sums, wait_for
from helpers.nats_server import NatsServer
from meterstream.emulator import Emulator


def test_folded_uses_and_events_are_opentelemetry_counters(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    create_meter(emulator, "tokens")
    create_meter(emulator, "api_calls", formula="count")
    publish_uses(nats_server.url, "m", 90)
    publish_uses(nats_server.url, "c", 5, name="api_calls")
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    aggregate = {"tokens": "sum", "api_calls": "sum"}
    relay = RelayThread(
        nats_server.url,
        emulator,
        meter_provider=provider,
        aggregate=aggregate,
        aggregation_window=60,
    ).start()
    try:
        assert wait_for(lambda: emulator_totals(emulator) == expected_totals("m", 90))
        assert wait_for(lambda: relay.relay.stats()["fold_refused"] >= 5)
    finally:
        relay.stop()
        sums = metric_sums(reader)
        provider.shutdown()
    stats = relay.relay.stats()
    assert sums["meterstream.relay.folded_uses"] == stats["folded_uses"] == 90
    assert sums["meterstream.relay.folded_events"] == stats["folded_events"] < 90
    assert sums["meterstream.relay.fold_refused"] == stats["fold_refused"] == 5
    assert stats["sent"] == stats["folded_events"] + 5
