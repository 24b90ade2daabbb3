"""A three-node NATS cluster with an R3 stream: a node killed mid-run loses nothing."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import meterstream
from helpers.fleet import RelayThread, wait_for
from helpers.nats_server import UNAVAILABLE, NatsServer, wait_listening
from helpers.ports import free_port
from meterstream.emulator import Emulator
from meterstream.errors import ConfigurationError

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[NatsServer]]:
    if UNAVAILABLE:
        pytest.skip(UNAVAILABLE)
    routes = tuple(free_port() for _ in range(3))
    servers = [
        NatsServer(tmp_path / f"n{i}", name=f"n{i}", cluster_port=routes[i], routes=routes)
        for i in range(3)
    ]
    try:
        for server in servers:  # start all before waiting: they find each other
            server.start_process()
        for server in servers:
            wait_listening(server.port)
        yield servers
    finally:
        for server in servers:
            server.stop()


def _client(urls: str) -> meterstream.MeterClient:
    """A client once the cluster has elected its JetStream leader."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return meterstream.MeterClient(exporter="nats", nats_url=urls, nats_replicas=3)
        except ConfigurationError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_a_node_killed_mid_run_loses_and_duplicates_nothing(
    cluster: list[NatsServer], emulator: Emulator
) -> None:
    urls = ",".join(server.url for server in cluster)
    client = _client(urls)
    relay = None
    try:
        for i in range(300):
            client.record("api_calls", customer=f"cus_{i % 4}", identifier=f"a-{i}")
        assert client.flush(60)
        relay = RelayThread(urls, emulator, workers=2, batch_size=20).start()
        assert wait_for(lambda: len(emulator.state.events()) >= 60, timeout=60)
        cluster[0].kill()
        for i in range(300):
            client.record("api_calls", customer=f"cus_{i % 4}", identifier=f"b-{i}")
        assert client.flush(90)
        expected = {f"{p}-{i}" for p in "ab" for i in range(300)}
        assert wait_for(
            lambda: {e["identifier"] for e in emulator.state.events()} >= expected, timeout=90
        )
    finally:
        client.shutdown(5)
        if relay is not None:
            relay.stop()
    seen = Counter(e["identifier"] for e in emulator.state.events())
    assert set(seen) == expected
    assert max(seen.values()) == 1
