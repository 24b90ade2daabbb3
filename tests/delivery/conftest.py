"""Fixtures for delivery tests: an emulator that takes any event name, clients
aimed at it with fast retries, and the delivery errors a client reports."""

from __future__ import annotations

from typing import Any

import pytest

from helpers.delivery import API_KEY, FAST_RETRIES, Failures
from meterstream.emulator import Emulator


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"auto_create_meters": True}


@pytest.fixture
def client_settings(emulator: Emulator) -> dict[str, Any]:
    """Clients deliver to the emulator; a module aimed at another server overrides this."""
    return {
        "api_key": API_KEY,
        "api_base": emulator.api_base,
        "stream_base": emulator.stream_base,
        **FAST_RETRIES,
    }


@pytest.fixture
def failures() -> Failures:
    """What ``on_delivery_error`` was given, for the settings that report there."""
    return []
