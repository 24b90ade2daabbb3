"""Shared fixtures: a fresh default client per test, internal errors as failures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import meterstream
from meterstream import _default, _internal

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _isolate_meterstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[BaseException]]:
    """Each test starts with no default client and no METERSTREAM_* / STRIPE_API_KEY env.

    Errors the library swallows at its boundary are collected and fail the
    test, so a bug cannot hide behind "never break the host app".
    """
    import os

    for name in list(os.environ):
        if name.startswith("METERSTREAM_") or name in ("STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"):
            monkeypatch.delenv(name)
    _default.reset_default_client()
    errors: list[BaseException] = []
    monkeypatch.setattr(_internal, "internal_error_hook", errors.append)
    yield errors
    _default.reset_default_client()
    if errors:
        raise AssertionError(f"meterstream swallowed internal errors: {errors!r}")


@pytest.fixture
def memory_client() -> Iterator[meterstream.MeterClient]:
    """The default client on the memory exporter."""
    client = meterstream.configure(exporter="memory")
    yield client
    client.shutdown(0)


@pytest.fixture
def internal_errors(_isolate_meterstream: list[BaseException]) -> list[BaseException]:
    """The internal errors collected so far (a test that expects some clears it)."""
    return _isolate_meterstream
