"""Producer and relay processes with `--aggregate`: exact totals per customer and dimension."""

from __future__ import annotations

import signal
import subprocess
import sys
from decimal import Decimal

import pytest

from helpers.aggregate import Totals, create_meter, emulator_totals, expected_totals, identifiers
from helpers.fleet import wait_for
from helpers.fleet_processes import AGGREGATE_PRODUCER, finish, process_env, start_relay
from helpers.nats_server import NatsServer
from meterstream.emulator import Emulator

pytestmark = pytest.mark.slow


def test_three_producers_two_relays_fold_to_exact_totals(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    create_meter(emulator, "tokens")
    flags = ("--aggregate", "tokens=sum", "--aggregation-window", "60", "--workers", "2")
    relays = [start_relay(nats_server.url, emulator, *flags) for _ in range(2)]
    producers = [
        subprocess.Popen(
            [sys.executable, AGGREGATE_PRODUCER, nats_server.url, f"p{k}", "1000"],
            env=process_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for k in range(3)
    ]
    expected: Totals = {}
    for k in range(3):
        for key, value in expected_totals(f"p{k}", 1000).items():
            expected[key] = expected.get(key, Decimal(0)) + value
    try:
        for producer in producers:
            code, err = finish(producer, 120)
            assert code == 0, err
        assert wait_for(lambda: emulator_totals(emulator) == expected, timeout=90)
    finally:
        for relay in relays:
            relay.send_signal(signal.SIGTERM)
        results = [finish(relay, 30) for relay in relays]
    assert all(code == 0 for code, _ in results), results
    assert len(expected) == 12  # 4 customers x 3 models
    events = identifiers(emulator, "tokens")
    assert max(events.values()) == 1
    assert len(events) < 3000  # folded
    assert emulator_totals(emulator) == expected
