"""meterstream's pytest plugin (registered under ``pytest11``).

Fixtures:
    meter_events: the default client switched to the memory exporter for one
        test, as a :class:`meterstream.testing.MeterEvents`. Its settings
        can be given with the ``meter_events`` marker:
        ``@pytest.mark.meter_events(aggregate={"llm_tokens": "sum"})``.
    stripe_emulator: a local Stripe emulator on a free port, with a client
        configured to deliver to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from meterstream._client.client import MeterClient
from meterstream._default import configure, reset_default_client
from meterstream.testing import MeterEvents

if TYPE_CHECKING:
    from meterstream.emulator import Emulator

__all__ = ["EmulatorHandle", "meter_events", "stripe_emulator"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "meter_events(**settings): settings of the meter_events fixture's client "
        "(for example aggregate={'llm_tokens': 'sum'})",
    )


@pytest.fixture
def meter_events(request: pytest.FixtureRequest) -> Iterator[MeterEvents]:
    """Record through the default client into memory for this test; reset afterwards.

    Settings given with ``@pytest.mark.meter_events(**settings)`` (on the
    test, its class or module) apply on top of ``exporter="memory"``.
    """
    settings: dict[str, Any] = {"exporter": "memory", "flush_interval": 3600}
    marker = request.node.get_closest_marker("meter_events")
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(
                "@pytest.mark.meter_events takes settings as keywords, e.g. "
                "aggregate={'llm_tokens': 'sum'}"
            )
        settings.update(marker.kwargs)
    client = configure(**settings)
    try:
        yield MeterEvents(client)
    finally:
        reset_default_client()


class EmulatorHandle:
    """The ``stripe_emulator`` fixture's value.

    Attributes:
        emulator: the running :class:`meterstream.emulator.Emulator` (its
            ``state`` is the admin view: totals, events, faults).
        url / api_base / stream_base: where it listens.
        api_key: a secret key it accepts.
        client: a :class:`MeterClient` delivering to it.
    """

    api_key = "sk_test_meterstream"

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.url = emulator.url
        self.api_base = emulator.api_base
        self.stream_base = emulator.stream_base
        self.client = self.make_client()

    @property
    def admin(self) -> Emulator:
        return self.emulator

    @property
    def state(self) -> Any:
        return self.emulator.state

    def make_client(self, **settings: Any) -> MeterClient:
        """A new client delivering to this emulator (settings override the defaults)."""
        options: dict[str, Any] = {
            "api_key": self.api_key,
            "api_base": self.api_base,
            "stream_base": self.stream_base,
            "exporter": "stripe",
        }
        options.update(settings)
        return MeterClient(**options)


@pytest.fixture
def stripe_emulator() -> Iterator[EmulatorHandle]:
    """A Stripe emulator on 127.0.0.1 (free port) that creates meters on first use."""
    try:
        from meterstream.emulator import Emulator
    except ImportError as exc:  # pragma: no cover - depends on the extra
        pytest.skip(str(exc))
    emulator = Emulator(auto_create_meters=True)
    emulator.start()
    handle = EmulatorHandle(emulator)
    try:
        yield handle
    finally:
        handle.client.shutdown(2)
        emulator.stop()
