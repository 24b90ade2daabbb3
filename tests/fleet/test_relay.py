"""The relay: JetStream -> emulator, acknowledged only after Stripe accepted."""

from __future__ import annotations

import json
from collections import Counter

import meterstream
from helpers.fleet import RelayThread, publish_raw, read_stream, wait_for
from helpers.nats_server import NatsServer
from meterstream._fleet.nats import DEAD_REASON_HEADER
from meterstream.emulator import Emulator


def _publish(url: str, count: int, name: str = "api_calls") -> set[str]:
    client = meterstream.MeterClient(exporter="nats", nats_url=url)
    try:
        for i in range(count):
            client.record(name, value=1, customer=f"cus_{i % 5}", identifier=f"{name}-{i}")
        assert client.flush(30)
    finally:
        client.shutdown(5)
    return {f"{name}-{i}" for i in range(count)}


def test_every_published_event_reaches_stripe_once(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    idents = _publish(nats_server.url, 450)
    relay = RelayThread(nats_server.url, emulator, workers=2).start()
    try:
        assert wait_for(lambda: relay.relay.stats()["sent"] >= 450)
    finally:
        relay.stop()
    seen = Counter(e["identifier"] for e in emulator.state.events())
    assert set(seen) == idents
    assert max(seen.values()) == 1
    stats = relay.relay.stats()
    assert stats["sent"] == 450
    assert stats["dead_lettered"] == 0
    assert stats["requests"] >= 5  # batches of at most 100


def test_a_message_that_is_not_an_event_goes_to_the_dead_letter_subject(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    idents = _publish(nats_server.url, 10)
    publish_raw(
        nats_server.url,
        "METERSTREAM.events.api_calls",
        [b"not json", b'{"identifier": "x"}', b"[1, 2]"],
    )
    after = _publish(nats_server.url, 10, name="later")
    relay = RelayThread(nats_server.url, emulator).start()
    try:
        assert wait_for(lambda: relay.relay.stats()["sent"] >= 20)
        assert wait_for(lambda: relay.relay.stats()["dead_lettered"] >= 3)
    finally:
        relay.stop()
    assert {e["identifier"] for e in emulator.state.events()} == idents | after
    dead = read_stream(nats_server.url, "METERSTREAM.dead")
    assert sorted(m.data for m in dead) == sorted([b"not json", b'{"identifier": "x"}', b"[1, 2]"])
    reasons = [m.headers[DEAD_REASON_HEADER] for m in dead]
    assert all(r.startswith("invalid event: ") for r in reasons)
    assert any("not JSON" in r for r in reasons)
    assert any("event_name" in r for r in reasons)


def test_an_event_stripe_refuses_is_dead_lettered_and_the_rest_delivered(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    idents = _publish(nats_server.url, 30)
    emulator.set_faults(reject_identifier="api_calls-7")
    relay = RelayThread(nats_server.url, emulator).start()
    try:
        assert wait_for(lambda: relay.relay.stats()["sent"] >= 29)
        assert wait_for(lambda: relay.relay.stats()["dead_lettered"] >= 1)
    finally:
        relay.stop()
    assert {e["identifier"] for e in emulator.state.events()} == idents - {"api_calls-7"}
    dead = read_stream(nats_server.url, "METERSTREAM.dead")
    assert [json.loads(m.data)["identifier"] for m in dead] == ["api_calls-7"]
    assert dead[0].headers[DEAD_REASON_HEADER].startswith("stripe: ")


def test_a_flaky_stripe_is_retried_with_the_same_identifiers(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    idents = _publish(nats_server.url, 300)
    emulator.set_faults(fail_500=0.5)
    relay = RelayThread(nats_server.url, emulator, workers=3, batch_size=20).start()
    try:
        assert wait_for(lambda: relay.relay.stats()["sent"] >= 300, timeout=60)
    finally:
        relay.stop()
    assert {e["identifier"] for e in emulator.state.events()} == idents
    assert relay.relay.stats()["retried"] > 0


def test_a_slow_stripe_backs_up_into_jetstream_not_into_the_app(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    emulator.set_faults(latency_ms=400)
    relay = RelayThread(nats_server.url, emulator, workers=1, batch_size=10).start()
    client = meterstream.MeterClient(exporter="nats", nats_url=nats_server.url)
    try:
        for i in range(2000):
            client.record("api_calls", customer=f"cus_{i % 3}")
        # The app is done once JetStream holds them, whatever Stripe's pace.
        assert client.flush(30)
        assert client.stats()["queued"] == 0
        assert client.stats()["published"] == 2000
        assert relay.relay.stats()["sent"] < 2000
    finally:
        client.shutdown(5)
        relay.stop()
