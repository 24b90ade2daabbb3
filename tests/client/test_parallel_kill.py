"""SIGKILL of a process sending to Stripe and Metronome with a spool: nothing lost at either."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from apps.parallel_child import make_client
from helpers.spool import child_env, kill_when
from meterstream.emulator import Emulator

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL"),
]

KILLS = 6


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"auto_create_meters": True}


def _child(*args: str, stderr: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-m", "apps.parallel_child", *args],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=stderr,
    )


def test_sigkill_while_sending_to_both_loses_nothing_at_either(
    tmp_path: Path, emulator: Emulator
) -> None:
    spool = str(tmp_path / "meter.db")
    rng = random.Random()
    returned: list[str] = []
    for run in range(KILLS):
        errors = tmp_path / f"stderr-{run}.txt"
        with errors.open("wb") as stderr:
            proc = _child(spool, emulator.url, f"run{run}", "2", stderr=stderr)
        # Killed at a random moment, while both destinations are being sent to.
        lines = kill_when(proc, lambda _: threading.Event().wait(rng.uniform(0.2, 0.5)), errors)
        assert lines, f"run {run}: the child recorded nothing before the kill"
        returned.extend(lines)
    assert (tmp_path / "meter.metronome.db").exists()

    client = make_client(spool, emulator.url)
    try:
        assert client.flush(60), client.stats()
        stats = client.stats()["destinations"]
    finally:
        client.shutdown(5)
    stripe = [e["identifier"] for e in emulator.state.events("api_calls")]
    metronome = [e["transaction_id"] for e in emulator.state.metronome.events()]
    for name, arrived in (("stripe", stripe), ("metronome", metronome)):
        assert len(arrived) == len(set(arrived)), f"{name}: an identifier was stored twice"
        missing = set(returned) - set(arrived)
        assert not missing, f"{name}: {len(missing)} of {len(returned)} lost: {sorted(missing)[:5]}"
        assert all(ident.startswith("run") for ident in arrived)
        assert stats[name]["failed"] == 0
        assert stats[name]["spool_pending"] == 0
