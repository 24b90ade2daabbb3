"""A batch in flight longer than ack_wait is not redelivered under the relay sending it."""

from __future__ import annotations

import asyncio

import pytest

import meterstream
from helpers.fleet import RelayThread, wait_for
from helpers.nats_server import NatsServer
from meterstream.emulator import Emulator

pytestmark = pytest.mark.slow


async def _redelivered(url: str) -> int:
    import nats

    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().consumer_info("METERSTREAM", "meterstream-relay")
        return int(info.num_redelivered or 0)
    finally:
        await nc.close()


def test_a_slow_send_keeps_its_messages_in_progress(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    client = meterstream.MeterClient(exporter="nats", nats_url=nats_server.url)
    try:
        for i in range(20):
            client.record("api_calls", customer="cus_1", identifier=f"slow-{i}")
        assert client.flush(30)
    finally:
        client.shutdown(5)
    emulator.set_faults(latency_ms=4000)  # one request outlasts ack_wait twice over
    relays = [RelayThread(nats_server.url, emulator, ack_wait=1.5).start() for _ in range(2)]
    try:
        assert wait_for(lambda: sum(r.relay.stats()["sent"] for r in relays) >= 20, timeout=60)
    finally:
        for relay in relays:
            relay.stop()
    assert sum(r.relay.stats()["fetched"] for r in relays) == 20
    assert asyncio.run(_redelivered(nats_server.url)) == 0
