"""`relay --aggregate` in-process: exact folded totals, count meters unfolded, dead letters."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from helpers.aggregate import (
    create_meter,
    emulator_totals,
    expected_totals,
    identifiers,
    publish_uses,
)
from helpers.fleet import RelayThread, publish_raw, read_stream, wait_for
from helpers.nats_server import NatsServer
from meterstream._aggregate.arithmetic import window_start
from meterstream._fleet.aggregate import record_identifier
from meterstream._fleet.nats import DEAD_REASON_HEADER
from meterstream._record.events import format_timestamp
from meterstream.emulator import Emulator

pytestmark = pytest.mark.slow

AGGREGATE = {"aggregate": {"tokens": "sum"}, "aggregation_window": 60}


def test_two_relays_fold_sum_meters_to_exact_totals(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    create_meter(emulator, "tokens")
    publish_uses(nats_server.url, "u", 600)
    expected = expected_totals("u", 600)
    relays = [
        RelayThread(nats_server.url, emulator, aggregate_batch=50, **AGGREGATE).start()
        for _ in range(2)
    ]
    try:
        assert wait_for(lambda: emulator_totals(emulator) == expected, timeout=60)
        assert wait_for(lambda: sum(r.relay.stats()["folded_uses"] for r in relays) >= 600)
    finally:
        for relay in relays:
            relay.stop()
    stats = [r.relay.stats() for r in relays]
    assert sum(s["folded_uses"] for s in stats) == 600
    produced = sum(s["folded_events"] for s in stats)
    seen = identifiers(emulator, "tokens")
    assert max(seen.values()) == 1
    # At most 12 keys (4 customers x 3 models) per batch of 50 and window.
    assert len(seen) == produced < 600
    assert all(ident.startswith("msf_") for ident in seen)


def test_a_count_meter_is_sent_unfolded_with_a_warning(
    nats_server: NatsServer, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    create_meter(emulator, "tokens")
    create_meter(emulator, "api_calls", formula="count")
    publish_uses(nats_server.url, "c", 40, name="api_calls")
    publish_uses(nats_server.url, "s", 40)
    aggregate = {"aggregate": {"tokens": "sum", "api_calls": "sum"}, "aggregation_window": 60}
    caplog.set_level("WARNING", logger="meterstream.relay")
    relay = RelayThread(nats_server.url, emulator, **aggregate).start()
    try:
        assert wait_for(lambda: len(identifiers(emulator, "api_calls")) >= 40)
        assert wait_for(lambda: emulator_totals(emulator) == expected_totals("s", 40))
    finally:
        relay.stop()
    assert set(identifiers(emulator, "api_calls")) == {f"c-{i}" for i in range(40)}
    assert relay.relay.stats()["fold_refused"] == 40
    assert relay.relay.stats()["folded_uses"] == 40
    assert any("will not aggregate 'api_calls'" in r.getMessage() for r in caplog.records)


def test_a_bad_message_in_a_folded_batch_is_dead_lettered_and_the_rest_folded(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    create_meter(emulator, "tokens")
    publish_uses(nats_server.url, "a", 20)
    publish_raw(nats_server.url, "METERSTREAM.events.tokens", [b"not json", b'{"x": 1}'])
    publish_uses(nats_server.url, "b", 20)
    relay = RelayThread(nats_server.url, emulator, **AGGREGATE).start()
    try:
        expected = expected_totals("a", 20)
        for key, value in expected_totals("b", 20).items():
            expected[key] = expected.get(key, 0) + value
        assert wait_for(lambda: emulator_totals(emulator) == expected)
        assert wait_for(lambda: relay.relay.stats()["dead_lettered"] >= 2)
    finally:
        relay.stop()
    dead = read_stream(nats_server.url, "METERSTREAM.dead")
    assert sorted(m.data for m in dead) == sorted([b'{"x": 1}', b"not json"])
    assert all(m.headers[DEAD_REASON_HEADER].startswith("invalid event: ") for m in dead)


def test_a_folded_event_stripe_refuses_dead_letters_the_uses_it_folds(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    create_meter(emulator, "tokens")
    stamp = format_timestamp(window_start(time.time(), 60))  # one window for all
    bodies = [
        json.dumps(
            {
                "identifier": f"x-{i}",
                "event_name": "tokens",
                "timestamp": stamp,
                "payload": {"stripe_customer_id": f"cus_{i % 2}", "value": str(i + 1)},
            }
        ).encode()
        for i in range(6)
    ]
    publish_uses(nats_server.url, "none", 0)  # the exporter creates the stream
    publish_raw(nats_server.url, "METERSTREAM.events.tokens", bodies)
    refused = record_identifier(["x-0", "x-2", "x-4"]) + "_0"  # cus_0's group
    emulator.set_faults(reject_identifier=refused)
    relay = RelayThread(nats_server.url, emulator, **AGGREGATE).start()
    try:
        assert wait_for(lambda: relay.relay.stats()["dead_lettered"] >= 3)
        assert wait_for(lambda: len(identifiers(emulator, "tokens")) >= 1)
    finally:
        relay.stop()
    assert emulator_totals(emulator) == {("tokens", "cus_1", ""): Decimal(2 + 4 + 6)}
    dead = read_stream(nats_server.url, "METERSTREAM.dead")
    assert sorted(json.loads(m.data)["identifier"] for m in dead) == ["x-0", "x-2", "x-4"]
    assert all(m.headers[DEAD_REASON_HEADER].startswith("stripe: ") for m in dead)
