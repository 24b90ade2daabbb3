"""Shared fixtures: a fresh default client per test, internal errors as failures,
one emulator and one client factory.

``emulator`` and ``make_client`` are configured the pytest way, by overriding
a small fixture in a folder's conftest or in a test module:
``emulator_options`` for the emulator, ``client_settings`` for the clients.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Union

import pytest

import meterstream
from helpers.clients import ClientFactory
from meterstream import _default, _internal
from meterstream.emulator import Emulator

pytest_plugins = ["pytester"]

#: A meter for ``emulator_options["meters"]``: an event name (a sum meter of
#: that name) or the form ``POST /v1/billing/meters`` takes.
Meter = Union[str, dict[str, str]]


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


# -- the emulator ------------------------------------------------------------------------------


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    """How ``emulator`` is built: ``Emulator(**options)``, as Stripe is by default
    (no meters, so an event with no meter is reported).

    A folder or module overrides this fixture to change it, e.g.
    ``{"auto_create_meters": True}`` for an emulator that takes any event name,
    ``{"seed": 1234}``, or ``{"meters": [...]}``: the meters to create before
    the test (see :data:`Meter`).
    """
    return {}


def _meter_form(meter: Meter) -> dict[str, str]:
    if isinstance(meter, str):
        return {"display_name": meter, "event_name": meter, "default_aggregation[formula]": "sum"}
    return meter


@pytest.fixture
def emulator(emulator_options: dict[str, Any]) -> Iterator[Emulator]:
    """A running emulator on 127.0.0.1 (port 0), fresh for each test, stopped after it."""
    options = dict(emulator_options)
    meters: list[Meter] = list(options.pop("meters", ()))
    with Emulator(**options) as emu:
        for meter in meters:
            emu.state.create_meter(_meter_form(meter))
        yield emu


# -- clients -----------------------------------------------------------------------------------


@pytest.fixture
def client_settings() -> dict[str, Any]:
    """The settings every ``make_client`` client starts from; a call's keywords win.

    A folder or module overrides this fixture to aim its clients somewhere
    (the emulator, a hostile server) with its own key, retries and timeouts.
    """
    return {}


@pytest.fixture
def make_client(client_settings: dict[str, Any]) -> Iterator[ClientFactory]:
    """Build clients (see :class:`ClientFactory`); all are shut down after the test."""
    factory = ClientFactory(client_settings)
    yield factory
    for client in factory.clients:
        client.shutdown(1)
