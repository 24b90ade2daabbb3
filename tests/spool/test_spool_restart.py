"""A spool outlives its process: a restart delivers in order; processes share one spool."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
from datetime import datetime
from typing import Callable

import pytest

import meterstream
from apps import spool_child
from helpers.spool import assert_each_once, child
from meterstream.emulator import Emulator

pytestmark = pytest.mark.slow

EVENTS = 250  # three batches


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_restart_delivers_what_the_last_process_left_in_order_as_recorded(
    emulator: Emulator, dead_url: str, spool_path: str
) -> None:
    writer = child("write", spool_path, dead_url, "restart", str(EVENTS), stdout=subprocess.PIPE)
    out, _ = writer.communicate(timeout=60)
    assert writer.returncode == 0, out
    first = json.loads(out.decode().splitlines()[-1])["first"]
    assert emulator.state.event_count == 0

    # One request at a time: with several in flight (the default), batches
    # claimed oldest first may still arrive in any order.
    reader = child("deliver", spool_path, emulator.url, "30", "1", stdout=subprocess.PIPE)
    out, _ = reader.communicate(timeout=60)
    assert reader.returncode == 0, out
    result = json.loads(out.decode().splitlines()[-1])
    assert result["flushed"] is True, result

    expected = [f"restart-{n}" for n in range(EVENTS)]
    arrived = assert_each_once(emulator, set(expected))
    assert arrived == expected, "not delivered oldest first"
    for n, event in enumerate(emulator.state.events("api_calls")):
        assert _epoch(event["timestamp"]) == first + n, event
        assert event["customer"] == "cus_order"


def test_processes_sharing_one_spool_deliver_each_event_once(
    emulator: Emulator, spool_path: str
) -> None:
    # spawn, not fork: this process runs the emulator's threads (forking a
    # threaded process is tests/delivery/test_fork.py's subject, in a fresh child).
    method = "spawn"
    context = multiprocessing.get_context(method)
    procs = [
        context.Process(
            target=spool_child.share, args=(spool_path, emulator.url, f"{method}{n}", 2000)
        )
        for n in range(3)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0, f"{proc.name} exited {proc.exitcode}"
    expected = {f"{method}{n}-{m}" for n in range(3) for m in range(2000)}
    assert_each_once(emulator, expected)
    assert emulator.state.event_count == 6000
    assert emulator.state.duplicates == 0


def test_a_spool_left_by_a_dead_process_is_read_by_a_client_in_this_one(
    emulator: Emulator,
    dead_url: str,
    spool_path: str,
    make_client: Callable[..., meterstream.MeterClient],
) -> None:
    writer = child("write", spool_path, dead_url, "left", "20", stdout=subprocess.PIPE)
    out, _ = writer.communicate(timeout=60)
    assert writer.returncode == 0, out
    client = make_client(emulator.url, spool_path=spool_path)
    assert client.flush(30), client.stats()
    assert assert_each_once(emulator, {f"left-{n}" for n in range(20)}) == [
        f"left-{n}" for n in range(20)
    ]
