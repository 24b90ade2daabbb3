"""Real processes: producers and relays around one nats-server, relays killed and stopped."""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from helpers.fleet import wait_for
from helpers.fleet_processes import finish, start_producer, start_relay
from helpers.nats_server import NatsServer
from meterstream.emulator import Emulator

pytestmark = pytest.mark.slow


def _delivered(emulator: Emulator) -> Counter[str]:
    return Counter(e["identifier"] for e in emulator.state.events())


def test_four_producers_two_relays_one_killed_every_event_reaches_stripe_once(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    emulator.set_faults(latency_ms=30)
    # A short ack_wait: the killed relay's messages come back within seconds.
    flags = ("--workers", "2", "--ack-wait", "3", "--batch-size", "50")
    relays = [start_relay(nats_server.url, emulator, *flags) for _ in range(2)]
    producers = [start_producer(nats_server.url, f"p{k}", 1500) for k in range(4)]
    expected = {f"p{k}-{i}" for k in range(4) for i in range(1500)}
    try:
        assert wait_for(lambda: len(_delivered(emulator)) >= 600, timeout=60)
        relays[0].kill()  # mid-run: its unacknowledged messages go to the other relay
        for producer in producers:
            code, err = finish(producer)
            assert code == 0, err
        assert wait_for(lambda: set(_delivered(emulator)) >= expected, timeout=90)
    finally:
        for relay in relays:
            if relay.poll() is None:
                relay.send_signal(signal.SIGTERM)
        results = [finish(relay, 30) for relay in relays]
    seen = _delivered(emulator)
    assert set(seen) == expected
    assert max(seen.values()) == 1  # repeats were dropped by identifier
    code, err = results[1]
    assert code == 0, err
    assert "Traceback" not in err


def test_sigterm_finishes_batches_in_flight_and_exits_0(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    producer = start_producer(nats_server.url, "t", 400)
    assert finish(producer)[0] == 0
    emulator.set_faults(latency_ms=700)
    relay = start_relay(nats_server.url, emulator, "--workers", "2", "--batch-size", "20")
    assert wait_for(lambda: len(_delivered(emulator)) >= 20, timeout=60)
    relay.send_signal(signal.SIGTERM)
    code, err = finish(relay, 60)
    assert code == 0, err
    assert "relay stopped" in err
    assert "Traceback" not in err
    delivered_before = set(_delivered(emulator))
    assert 0 < len(delivered_before) < 400
    # What it did not deliver was handed back: the next relay delivers it.
    emulator.set_faults(latency_ms=0)
    relay = start_relay(nats_server.url, emulator)
    try:
        assert wait_for(lambda: len(_delivered(emulator)) >= 400, timeout=60)
    finally:
        relay.send_signal(signal.SIGTERM)
        assert finish(relay, 30)[0] == 0
    assert set(_delivered(emulator)) == {f"t-{i}" for i in range(400)}


def test_relays_keep_the_shared_request_budget_under_a_low_limit(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    producer = start_producer(nats_server.url, "b", 45)
    assert finish(producer)[0] == 0
    flags = ("--max-rps", "10", "--batch-size", "1", "--workers", "3")
    relays = [start_relay(nats_server.url, emulator, *flags) for _ in range(2)]
    try:
        assert wait_for(lambda: len(_delivered(emulator)) >= 45, timeout=60)
    finally:
        for relay in relays:
            relay.send_signal(signal.SIGTERM)
        results = [finish(relay, 30) for relay in relays]
    assert all(code == 0 for code, _ in results), results
    # One event a request: requests per wall-clock second, as the emulator saw them.
    per_second = Counter(e["received_at"][:19] for e in emulator.state.events())
    assert sum(per_second.values()) == 45
    # 10 a second, plus a request leased at the end of a second that arrived
    # in the next one.
    assert max(per_second.values()) <= 12, per_second
    assert len(per_second) >= 4, per_second


def test_a_wrong_nats_url_exits_2_with_a_hint(emulator: Emulator) -> None:
    code, err = finish(start_relay("nats://127.0.0.1:1", emulator), 60)
    assert code == 2
    assert "--nats-url" in err
    assert "Traceback" not in err
