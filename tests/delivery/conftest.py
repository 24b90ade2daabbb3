"""Fixtures for delivery tests: a real emulator on 127.0.0.1 and clients aimed at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import pytest

import meterstream
from helpers.delivery import API_KEY, FAST_RETRIES
from meterstream.emulator import Emulator


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(auto_create_meters=True) as emu:
        yield emu


@pytest.fixture
def make_client(emulator: Emulator) -> Iterator[Callable[..., meterstream.MeterClient]]:
    """Build clients delivering to the emulator; all are shut down after the test."""
    clients: list[meterstream.MeterClient] = []

    def make(**settings: Any) -> meterstream.MeterClient:
        options: dict[str, Any] = {
            "api_key": API_KEY,
            "api_base": emulator.api_base,
            "stream_base": emulator.stream_base,
            **FAST_RETRIES,
        }
        options.update(settings)
        client = meterstream.MeterClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(1)
