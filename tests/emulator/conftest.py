"""Fixtures for the emulator's own tests: a seeded emulator, a fake clock, HTTP clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from helpers.emulator_api import Api, FakeClock
from meterstream.emulator import Emulator


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"seed": 1234}


@pytest.fixture
def clock(emulator: Emulator) -> FakeClock:
    """A fake clock installed in the emulator's state."""
    fake = FakeClock()
    emulator.state.clock = fake
    return fake


@pytest.fixture
def http(emulator: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.url, timeout=10) as client:
        yield client


@pytest.fixture
def api(http: httpx.Client) -> Api:
    return Api(http)
