"""`relay --aggregate` with relays killed: no use billed twice, none lost."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import urllib.parse
from decimal import Decimal

import pytest

from helpers.aggregate import (
    Totals,
    create_meter,
    emulator_totals,
    expected_totals,
    identifiers,
    publish_uses,
)
from helpers.fleet import wait_for
from helpers.fleet_processes import finish, start_relay
from helpers.holding_proxy import HoldingProxy
from helpers.nats_server import NatsServer
from meterstream.emulator import Emulator

pytestmark = pytest.mark.slow

AGGREGATE = ("--aggregate", "tokens=sum", "--aggregation-window", "60", "--ack-wait", "2")


def _merge(*parts: Totals) -> Totals:
    out: Totals = {}
    for part in parts:
        for key, value in part.items():
            out[key] = out.get(key, Decimal(0)) + value
    return out


async def _consumer_settled(url: str) -> bool:
    import nats

    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().consumer_info("METERSTREAM", "meterstream-relay")
        return info.num_pending == 0 and info.num_ack_pending == 0
    finally:
        await nc.close()


def _settled(url: str) -> bool:
    return asyncio.run(_consumer_settled(url))


def _stop(relays: list[subprocess.Popen[bytes]]) -> list[tuple[int, str]]:
    for relay in relays:
        if relay.poll() is None:
            relay.send_signal(signal.SIGTERM)
    return [finish(relay, 30) for relay in relays]


def test_stripe_accepted_then_the_relay_died_before_acking_regrouped_uses_bill_once(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    """The dangerous interleaving, forced.

    Relay A folds 30 uses into one group, Stripe (the emulator) stores the
    folded events, and A is SIGKILLed before it hears back, so before any
    acknowledgement. Its 30 messages are redelivered to relay B, which
    folds 7 messages at a time, together with 30 new uses: a refold would put them
    in other groups, under other identifiers, and bill them twice.
    """
    create_meter(emulator, "tokens")
    publish_uses(nats_server.url, "a", 30)
    port = urllib.parse.urlsplit(emulator.stream_base).port
    assert port is not None
    proxy = HoldingProxy(port).start()
    relays = []
    try:
        relay_a = start_relay(
            nats_server.url, emulator, *AGGREGATE, "--fold-batch", "30", "--stream-base", proxy.url
        )
        relays.append(relay_a)
        assert proxy.answered.wait(60), finish(relay_a, 1)
        relay_a.kill()
        relay_a.wait(10)
        stored_by_a = set(identifiers(emulator, "tokens"))
        assert stored_by_a  # Stripe accepted A's folded events
        publish_uses(nats_server.url, "n", 30)
        relays.append(start_relay(nats_server.url, emulator, *AGGREGATE, "--fold-batch", "7"))
        expected = _merge(expected_totals("a", 30), expected_totals("n", 30))
        assert wait_for(lambda: _settled(nats_server.url), timeout=90)
    finally:
        results = _stop(relays)
        proxy.close()
    assert emulator_totals(emulator) == expected
    assert stored_by_a <= set(identifiers(emulator, "tokens"))
    code, err = results[1]
    assert code == 0, err
    assert "Traceback" not in err


def test_a_relay_sigkilled_mid_run_with_aggregate_keeps_totals_exact(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    create_meter(emulator, "tokens")
    emulator.set_faults(latency_ms=30)
    flags = (*AGGREGATE, "--workers", "2", "--fold-batch", "40")
    relays = [start_relay(nats_server.url, emulator, *flags) for _ in range(2)]
    try:
        publish_uses(nats_server.url, "p", 1500)
        assert wait_for(lambda: len(identifiers(emulator, "tokens")) >= 30, timeout=60)
        relays[0].kill()  # mid-run: its unacknowledged messages go to the other relay
        publish_uses(nats_server.url, "q", 1500)
        assert wait_for(lambda: _settled(nats_server.url), timeout=120)
    finally:
        results = _stop(relays)
    expected = _merge(expected_totals("p", 1500), expected_totals("q", 1500))
    assert emulator_totals(emulator) == expected
    code, err = results[1]
    assert code == 0, err
    assert "Traceback" not in err
