"""Fixtures for fleet tests: real nats-server processes and the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.nats_server import UNAVAILABLE, NatsServer

pytest.importorskip("nats", reason="fleet tests need nats-py: pip install 'meterstream[nats]'")


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    if UNAVAILABLE:
        pytest.skip(UNAVAILABLE)
    server = NatsServer(tmp_path / "js").start()
    yield server
    server.stop()


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"auto_create_meters": True}
