"""Fixtures for the spool tests: an emulator, a dead port, a spool file, clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

import meterstream
from helpers.delivery import FAST_RETRIES
from helpers.ports import free_port
from helpers.spool import API_KEY
from meterstream.emulator import Emulator


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(auto_create_meters=True) as emu:
        yield emu


@pytest.fixture
def dead_url() -> str:
    """A URL where nothing listens: every request is refused, nothing is delivered."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def spool_path(tmp_path: Path) -> str:
    return str(tmp_path / "meterstream.db")


@pytest.fixture
def make_client() -> Iterator[Callable[..., meterstream.MeterClient]]:
    """Build spool clients (``url=`` the exporter's base); all shut down after the test."""
    clients: list[meterstream.MeterClient] = []

    def make(url: str, **settings: Any) -> meterstream.MeterClient:
        options: dict[str, Any] = {
            "api_key": API_KEY,
            "api_base": url,
            "stream_base": url,
            **FAST_RETRIES,
            **settings,
        }
        client = meterstream.MeterClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(1)
