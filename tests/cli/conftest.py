"""The CLI's tests send real events: an emulator that takes any event name."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"auto_create_meters": True}
