"""Fixtures for token metering: the fake model server and the real SDKs pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import meterstream
from helpers.llm import SYNC_CLIENTS
from meterstream.testing.llm import FakeModelServer

pytest.importorskip("openai")
pytest.importorskip("anthropic")


@pytest.fixture(autouse=True)
def _close_sync_clients() -> Iterator[None]:
    """Sync SDK clients made by a test are closed after it (async ones close in their loop)."""
    yield
    while SYNC_CLIENTS:
        SYNC_CLIENTS.pop().close()


@pytest.fixture
def fake() -> Iterator[FakeModelServer]:
    with FakeModelServer(cached_input=3, cache_write=1, reasoning=2) as server:
        yield server


@pytest.fixture
def meter() -> Iterator[meterstream.MeterClient]:
    """The default client on the memory exporter."""
    client = meterstream.configure(exporter="memory", flush_interval=3600)
    yield client
    client.shutdown(0)
