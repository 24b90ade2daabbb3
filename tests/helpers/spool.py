"""The spool's real-process tests: child programs (``apps/spool_child.py``),
killed at a chosen moment, and the check that each event arrived once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from meterstream.emulator import Emulator

TESTS = Path(__file__).resolve().parents[1]
API_KEY = "sk_test_spool"  # the key tests/apps/spool_child.py uses


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH")) if p)
    return env


def child(*args: str, **popen: Any) -> subprocess.Popen[bytes]:
    """Start tests/apps/spool_child.py with *args*."""
    return subprocess.Popen(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-m", "apps.spool_child", *args],
        env=child_env(),
        **popen,
    )


def identifiers(emulator: Emulator) -> list[str]:
    """The identifiers the emulator stored, in arrival order."""
    return [e["identifier"] for e in emulator.state.events("api_calls")]


def assert_each_once(emulator: Emulator, expected: set[str]) -> list[str]:
    """Every expected identifier arrived, and no identifier was stored twice."""
    arrived = identifiers(emulator)
    assert len(arrived) == len(set(arrived)), "an identifier was stored twice"
    missing = expected - set(arrived)
    assert not missing, f"{len(missing)} of {len(expected)} lost, e.g. {sorted(missing)[:5]}"
    return arrived


def kill_when(
    proc: subprocess.Popen[bytes], moment: Callable[[list[str]], object], errors: Path
) -> list[str]:
    """SIGKILL a recording child at *moment*; the lines it wrote before dying.

    The child prints ``ready`` when it starts recording, then a line per use
    whose ``record()`` returned. *moment* is called with the lines read so
    far once it is ready, and returns when the kill is due (waiting a random
    time, or for enough lines); *errors* holds the child's stderr, shown when
    it did not die of the kill.
    """
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode().strip()
            if line == "ready":
                ready.set()
            elif line:
                lines.append(line)
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(30), "the child did not start recording"
        moment(lines)
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(30)
        reader.join(30)
    finally:
        proc.kill()
        proc.wait(30)
        assert proc.stdout is not None
        proc.stdout.close()
    assert code == -signal.SIGKILL, errors.read_text()
    return lines
