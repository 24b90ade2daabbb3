"""Fixtures for the web integrations: a memory client that flushes only when told."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import meterstream


@pytest.fixture
def client() -> Iterator[meterstream.MeterClient]:
    """The default client on the memory exporter, never flushing by itself."""
    client = meterstream.configure(exporter="memory", flush_interval=3600)
    yield client
    client.shutdown(0)
