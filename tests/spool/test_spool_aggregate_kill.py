"""SIGKILL of a child folding uses in a spool: every acknowledged use is billed exactly once."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Callable

import pytest

import meterstream
from helpers.spool import child_env, kill_when
from meterstream.emulator import Emulator

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL"),
]

KILLS = 10
THREADS = 4
MAX_VALUE = Decimal(1000)  # the largest value the child records (tests/apps/aggregate_child.py)
AGGREGATE_CHILD = [sys.executable, "-W", "ignore::DeprecationWarning", "-m", "apps.aggregate_child"]


def test_sigkill_while_folding_bills_every_acknowledged_use_once(
    tmp_path: Path,
    emulator: Emulator,
    spool_path: str,
    make_client: Callable[..., meterstream.MeterClient],
) -> None:
    # The meter sums: the children's meter check keeps folding it.
    emulator.state.create_meter(
        {"event_name": "tokens", "display_name": "tokens", "default_aggregation[formula]": "sum"}
    )
    # Slow answers and some 500s: kills land between a send and its ack,
    # and batches are retried.
    emulator.state.set_faults(latency_ms=200, fail_500=0.2)
    rng = random.Random()
    acknowledged: dict[str, Decimal] = defaultdict(Decimal)
    uses = 0
    for run in range(KILLS):
        errors = tmp_path / f"stderr-{run}.txt"
        with errors.open("wb") as stderr:
            proc = subprocess.Popen(
                [*AGGREGATE_CHILD, "record", spool_path, emulator.url, str(THREADS), str(run)],
                env=child_env(),
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        # A random moment: inside a window, at a fold, between a send and its ack.
        lines = kill_when(proc, lambda _: threading.Event().wait(rng.uniform(0.2, 1.5)), errors)
        assert lines, f"run {run}: the child recorded nothing before the kill"
        uses += len(lines)
        for line in lines:
            customer, value = line.split()
            acknowledged[customer] += Decimal(value)

    emulator.state.set_faults(latency_ms=0, fail_500=0.0)
    client = make_client(emulator.url, spool_path=spool_path, aggregate={"tokens": "sum"})
    assert client.flush(60), client.stats()
    client.shutdown(10)

    billed: dict[str, Decimal] = defaultdict(Decimal)
    events = emulator.state.events("tokens")
    for event in events:
        billed[event["customer"]] += Decimal(event["payload"]["value"])
    identifiers = [event["identifier"] for event in events]
    assert len(identifiers) == len(set(identifiers))
    assert len(events) * 10 < uses, "the uses were not folded"

    for customer, used in acknowledged.items():
        assert billed[customer] >= used, f"{customer}: billed {billed[customer]} < used {used}"
    # Uses inserted but killed before their line was written may be billed
    # too: at most one a thread a kill.
    extra = sum(billed.values()) - sum(acknowledged.values())
    assert 0 <= extra <= THREADS * KILLS * MAX_VALUE

    # What the spool recorded as accepted matches what Stripe stored, per
    # identifier: no identifier was ever sent with another value.
    stored = {event["identifier"]: Decimal(event["payload"]["value"]) for event in events}
    with sqlite3.connect(spool_path) as db:
        accepted = db.execute("SELECT identifier, value FROM accepted").fetchall()
        left = db.execute("SELECT count(*) FROM uses").fetchone()[0]
    assert left == 0
    assert accepted
    for ident, value in accepted:
        assert Decimal(str(value)) == stored[ident], ident
