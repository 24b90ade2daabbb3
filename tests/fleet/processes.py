"""Relay and producer processes for the fleet tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from meterstream.emulator import Emulator

from .helpers import API_KEY

PRODUCER = str(Path(__file__).with_name("producer.py"))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_relay(url: str, emulator: Emulator, *flags: str) -> subprocess.Popen[bytes]:
    args = [
        sys.executable, "-m", "meterstream", "relay", "--nats-url", url,
        "--api-key", API_KEY, "--api-base", emulator.api_base,
        "--stream-base", emulator.stream_base, *flags,
    ]  # fmt: skip
    return subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def start_producer(url: str, prefix: str, count: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, PRODUCER, url, prefix, str(count)],
        env=_env(),
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
