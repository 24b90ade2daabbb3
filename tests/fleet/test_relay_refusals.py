"""A 400 that does not name its event: the relay bisects, as the delivery engine does."""

from __future__ import annotations

import json

import meterstream
from helpers.fleet import RelayThread, read_stream, wait_for
from helpers.nats_server import NatsServer
from meterstream.emulator import Emulator


def test_a_refusal_without_an_index_dead_letters_only_the_refused_event(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    client = meterstream.MeterClient(exporter="nats", nats_url=nats_server.url)
    try:
        for i in range(40):
            client.record("api_calls", customer="cus_1", identifier=f"e-{i}")
        assert client.flush(30)
    finally:
        client.shutdown(5)
    emulator.set_faults(reject_identifier="e-13", reject_names_event=False)
    relay = RelayThread(nats_server.url, emulator).start()
    try:
        assert wait_for(lambda: relay.relay.stats()["sent"] >= 39)
        assert wait_for(lambda: relay.relay.stats()["dead_lettered"] >= 1)
    finally:
        relay.stop()
    assert {e["identifier"] for e in emulator.state.events()} == {
        f"e-{i}" for i in range(40) if i != 13
    }
    dead = read_stream(nats_server.url, "METERSTREAM.dead")
    assert [json.loads(m.data)["identifier"] for m in dead] == ["e-13"]
