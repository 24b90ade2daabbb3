"""exporter="nats" with spool_path: NATS down, the producer killed, a restart."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import meterstream
from helpers.fleet import RelayThread, read_stream, wait_for
from helpers.fleet_processes import SPOOL_PRODUCER, process_env
from helpers.nats_server import NatsServer
from meterstream.emulator import Emulator

pytestmark = pytest.mark.slow


def _published(url: str) -> Counter[str]:
    return Counter(m.headers["Nats-Msg-Id"] for m in read_stream(url, "METERSTREAM.events.>"))


def test_events_recorded_while_nats_is_down_wait_in_the_spool_not_in_memory(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    client = meterstream.MeterClient(
        exporter="nats",
        nats_url=nats_server.url,
        spool_path=str(tmp_path / "spool.db"),
        request_timeout=1.0,
        retry_initial_delay=0.05,
        retry_max_delay=0.5,
        max_queue_size=50,
    )
    try:
        nats_server.kill()
        for i in range(2000):
            client.record("api_calls", customer="cus_1", identifier=f"down-{i}")
        assert not client.flush(1.0)
        stats = client.stats()
        # Far past max_queue_size, nothing dropped: they wait in the spool.
        assert stats["dropped"] == 0
        assert stats["spool_pending"] == 2000
        nats_server.start()
        assert client.flush(90)
        assert client.stats()["spool_pending"] == 0
    finally:
        client.shutdown(5)
    seen = _published(nats_server.url)
    assert set(seen) == {f"down-{i}" for i in range(2000)}
    assert max(seen.values()) == 1


def test_a_producer_killed_while_nats_is_down_loses_nothing_after_a_restart(
    nats_server: NatsServer, emulator: Emulator, tmp_path: Path
) -> None:
    spool = str(tmp_path / "spool.db")
    producer = subprocess.Popen(
        [sys.executable, SPOOL_PRODUCER, "record", nats_server.url, spool, "k", "3000"],
        env=process_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    returned: list[str] = []
    try:
        assert producer.stdout is not None and producer.stdin is not None
        assert producer.stdout.readline().strip() == b"ready"
        nats_server.kill()  # down while it records
        producer.stdin.write(b"go\n")
        producer.stdin.flush()
        while len(returned) < 1200:
            line = producer.stdout.readline().decode().strip()
            assert line and line != "done", line
            returned.append(line)
    finally:
        producer.kill()  # SIGKILL mid-run, NATS still down
        producer.communicate(timeout=10)  # and close the pipes
    nats_server.start()
    drain = subprocess.run(
        [sys.executable, SPOOL_PRODUCER, "drain", nats_server.url, spool],
        env=process_env(),
        capture_output=True,
        timeout=180,
    )
    assert drain.returncode == 0, drain.stderr.decode(errors="replace")
    seen = _published(nats_server.url)
    assert set(returned) <= set(seen)  # every event whose record() returned
    assert max(seen.values()) == 1
    relay = RelayThread(nats_server.url, emulator).start()
    try:
        assert wait_for(lambda: relay.relay.stats()["sent"] >= len(seen), timeout=60)
    finally:
        relay.stop()
    delivered = Counter(e["identifier"] for e in emulator.state.events())
    assert set(delivered) == set(seen)
    assert max(delivered.values()) == 1
