"""Fixtures for exporter tests: a real emulator on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meterstream.emulator import Emulator


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu
