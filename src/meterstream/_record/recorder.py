"""The contract between the decorators and a client: what ``meter()`` and
``metering()`` may ask of whatever records for them.

``MeterClient`` implements it; the decorators import only this protocol, so
they can be tested against a fake and no import cycle runs through them.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from meterstream.errors import InvalidEventError

__all__ = ["Recorder"]


class Recorder(Protocol):
    """What the decorators call, on the hot path of every metered call."""

    #: False when the client is disabled (``enabled=False``): decorators call
    #: straight through and record nothing.
    active: bool

    def record_use(
        self,
        event_name: str,
        value: Any,
        customer: Optional[str],
        identifier: Optional[str],
        dimensions: Optional[dict[str, str]],
        timestamp: Any,
    ) -> Any:
        """Check and record one use; the event name and dimensions are already checked.

        Returns the identifier recorded (a string, or the number of a
        generated one) or None when nothing was recorded of its own."""

    def record_constant(
        self,
        event_name: str,
        value: Any,
        customer: Optional[str],
        dimensions: Optional[dict[str, str]],
    ) -> None:
        """Record one use whose value and dimensions were checked at decoration time."""

    def invalid(self, error: InvalidEventError, event_name: Any) -> None:
        """A use failed its checks: raise *error* (``raise_errors``), or count and log it."""

    def customer_at_start(self, event_name: str) -> Optional[str]:
        """No customer in the context when a metered call starts: find one, or
        raise ``MissingCustomerError`` before any work is done when asked to."""
