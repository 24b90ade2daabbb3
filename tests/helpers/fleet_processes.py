"""Relay and producer processes for the fleet tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers.fleet import API_KEY
from meterstream.emulator import Emulator

_APPS = Path(__file__).resolve().parents[1] / "apps"
#: Child programs, run as ``python PROGRAM ...`` (see each one's docstring).
PRODUCER = str(_APPS / "nats_producer.py")
AGGREGATE_PRODUCER = str(_APPS / "nats_aggregate_producer.py")
SPOOL_PRODUCER = str(_APPS / "nats_spool_producer.py")


def process_env() -> dict[str, str]:
    """The environment for a child: ours without METERSTREAM_*, output unbuffered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_relay(url: str, emulator: Emulator, *flags: str) -> subprocess.Popen[bytes]:
    args = [
        sys.executable, "-m", "meterstream", "relay", "--nats-url", url,
        "--api-key", API_KEY, "--api-base", emulator.api_base,
        "--stream-base", emulator.stream_base, *flags,
    ]  # fmt: skip
    return subprocess.Popen(args, env=process_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def start_producer(url: str, prefix: str, count: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, PRODUCER, url, prefix, str(count)],
        env=process_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(process: subprocess.Popen[bytes], timeout: float = 60.0) -> tuple[int, str]:
    """Wait for *process*; (exit code, stderr)."""
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return process.returncode, err.decode(errors="replace")
