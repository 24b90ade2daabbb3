"""`relay --aggregate` when Stripe's meters cannot be read at start: it waits, never guesses."""

from __future__ import annotations

import threading

import pytest

from helpers.aggregate import (
    create_meter,
    emulator_totals,
    expected_totals,
    identifiers,
    publish_uses,
)
from helpers.fleet import RelayThread, wait_for
from helpers.nats_server import NatsServer
from helpers.ports import free_port
from meterstream.emulator import Emulator

pytestmark = pytest.mark.slow


def test_a_relay_that_cannot_read_the_meters_waits_instead_of_folding_a_count_meter(
    nats_server: NatsServer, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    # Folding every configured name when the meters cannot be read would fold
    # a count meter (under-billing it), and fold differently from relays that
    # could read them (a redelivered use would go out twice).
    create_meter(emulator, "tokens")
    create_meter(emulator, "api_calls", formula="count")
    publish_uses(nats_server.url, "c", 20, name="api_calls")
    publish_uses(nats_server.url, "s", 20)
    aggregate = {"aggregate": {"tokens": "sum", "api_calls": "sum"}, "aggregation_window": 60}
    caplog.set_level("WARNING", logger="meterstream.relay")
    # The meters are read from a Stripe not up yet: nothing listens on its port.
    port = free_port()
    relay = RelayThread(
        nats_server.url, emulator, meters_base=f"http://127.0.0.1:{port}", **aggregate
    )
    starting = threading.Thread(target=relay.start, daemon=True)
    starting.start()
    late = None
    try:
        assert wait_for(lambda: "the relay starts once it can" in caplog.text, timeout=30)
        assert not relay.relay.ready.is_set()
        assert emulator_totals(emulator) == {}
        late = Emulator(port=port).__enter__()
        create_meter(late, "tokens")
        create_meter(late, "api_calls", formula="count")
        starting.join(60)
        assert relay.relay.ready.is_set()
        assert relay.relay.aggregate_rules is not None
        assert "api_calls" in relay.relay.aggregate_rules.refused
        assert wait_for(lambda: len(identifiers(emulator, "api_calls")) >= 20, timeout=30)
        assert wait_for(lambda: emulator_totals(emulator) == expected_totals("s", 20), timeout=30)
    finally:
        relay.stop()
        if late is not None:
            late.__exit__(None, None, None)
    assert set(identifiers(emulator, "api_calls")) == {f"c-{i}" for i in range(20)}
