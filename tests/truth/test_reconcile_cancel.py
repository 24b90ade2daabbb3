"""``meterstream reconcile`` after cancel(): the grace for adjustments Stripe has
not applied yet, and a difference once it passed."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from meterstream import MeterClient
from meterstream.emulator import Emulator, Total

KEY = "sk_test_reconcile_cancel"
HOUR = 3600


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"auto_create_meters": True}


def reconcile(emulator: Emulator, path: str, since: int, *args: str) -> dict[str, Any]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    environment.pop("STRIPE_API_KEY", None)
    done = subprocess.run(
        [sys.executable, "-m", "meterstream", "reconcile", "--base", emulator.url]
        + ["--api-key", KEY, "--spool", path, "--since", str(since)]
        + ["--until", str(since + HOUR), "--window", "hour", "--json", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["agrees"] == (done.returncode == 0)
    return result


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {row["customer"]: row["status"] for row in result["rows"]}


def test_a_recent_cancellation_settles_within_the_grace_then_differs_while_stripe_counts_it(
    emulator: Emulator, tmp_path: Path
) -> None:
    path = str(tmp_path / "meter.db")
    since = int(time.time()) // HOUR * HOUR - HOUR
    client = MeterClient(
        api_key=KEY,
        api_base=emulator.url,
        stream_base=emulator.url,
        exporter="stripe",
        spool_path=path,
        raise_errors=True,
    )
    client.record("api", 2, customer="cus_a", identifier="a-1", timestamp=since + 60)
    client.record("api", 3, customer="cus_a", identifier="a-2", timestamp=since + 61)
    client.record("api", 4, customer="cus_b", identifier="b-1", timestamp=since + 62)
    assert client.flush(5)
    assert client.spool is not None
    client.spool.catch_up_history()  # the accepted batches logged: into the table changed here
    with sqlite3.connect(path) as db:  # accepted long ago: only the cancellations are recent
        db.execute("UPDATE accepted SET accepted_at = ?", (time.time() - 2 * HOUR,))
    emulator.set_faults(adjustment_lag=HOUR)  # Stripe has not processed the adjustments
    assert client.cancel("a-2", "api") == "queued"
    assert client.cancel("b-1", "api") == "queued"  # cus_b's only event
    assert client.flush(5)
    client.shutdown(1)
    assert emulator.state.total("api", "cus_a") == Total(5.0, 2)  # still counted

    within = reconcile(emulator, path, since, "--grace", "600")
    assert within["agrees"] and within["settling"] == 2
    assert statuses(within) == {"cus_a": "settling", "cus_b": "settling"}

    with sqlite3.connect(path) as db:  # the adjustments were accepted 20 minutes ago
        db.execute("UPDATE cancellations SET settled_at = ?", (time.time() - 1200,))
    past = reconcile(emulator, path, since, "--grace", "600")
    assert not past["agrees"]
    assert statuses(past) == {"cus_a": "differs", "cus_b": "differs"}
    rows = {row["customer"]: row for row in past["rows"]}
    assert Decimal(rows["cus_a"]["spool"]) == 2 and Decimal(rows["cus_a"]["stripe"]) == 5
    assert Decimal(rows["cus_b"]["spool"]) == 0 and Decimal(rows["cus_b"]["stripe"]) == 4

    now = time.time()
    emulator.state.clock = lambda: now + HOUR + 1  # Stripe processed them
    applied = reconcile(emulator, path, since, "--grace", "600")
    assert applied["agrees"] and applied["settling"] == 0
    # cus_b has nothing left at either side: no window to compare.
    assert statuses(applied) == {"cus_a": "agrees"}
