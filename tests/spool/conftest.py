"""Fixtures for the spool tests: an emulator, a dead port, a spool file, clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers.delivery import FAST_RETRIES
from helpers.ports import free_port
from helpers.spool import API_KEY


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"auto_create_meters": True}


@pytest.fixture
def dead_url() -> str:
    """A URL where nothing listens: every request is refused, nothing is delivered."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def spool_path(tmp_path: Path) -> str:
    return str(tmp_path / "meterstream.db")


@pytest.fixture
def client_settings() -> dict[str, Any]:
    """Spool tests aim each client with ``make_client(url, ...)``: the emulator or a dead URL."""
    return {"api_key": API_KEY, **FAST_RETRIES}
