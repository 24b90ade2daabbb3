"""Shared fixtures: one real emulator on 127.0.0.1, reset around every test."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from helpers.emulator_api import Api, FakeClock
from meterstream.emulator import Emulator, EmulatorState


def restore_defaults(state: EmulatorState) -> None:
    state.reset()
    state.clock = time.time
    state.api_keys = None
    state.auto_create_meters = False
    state.session_ttl = 900.0
    state.check_timestamp_range = True


@pytest.fixture(scope="session")
def _shared_emulator() -> Iterator[Emulator]:
    emulator = Emulator(port=0, seed=1234)
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture
def emulator(_shared_emulator: Emulator) -> Iterator[Emulator]:
    """A running ``Emulator(port=0)``, its state and faults reset for each test."""
    restore_defaults(_shared_emulator.state)
    yield _shared_emulator
    _shared_emulator.set_faults(hang=False)
    restore_defaults(_shared_emulator.state)


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
