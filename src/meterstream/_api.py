"""The module-level API: the default client's methods as functions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional, TypeVar

from ._decorators import make_meter
from ._default import get_client
from ._metering import metering as _metering

__all__ = ["flush", "meter", "metering", "record", "shutdown", "stats"]

_F = TypeVar("_F", bound=Callable[..., Any])


def meter(
    event_name: str,
    *,
    value: Any = 1,
    customer: Any = None,
    identifier: Any = None,
    dimensions: Optional[Mapping[str, str]] = None,
    on_error: str = "skip",
) -> Callable[[_F], _F]:
    """Decorate a function so that each successful call records one use.

    See :meth:`MeterClient.meter`; this one records through the default
    client, whichever it is when the function is called.

    Example::

        @meterstream.meter("ai_search_api", value=lambda call: len(call.result))
        def search(query): ...
    """
    return make_meter(
        get_client,
        event_name,
        value=value,
        customer=customer,
        identifier=identifier,
        dimensions=dimensions,
        on_error=on_error,
    )


def metering(
    event_name: str,
    *,
    customer: Optional[str] = None,
    identifier: Optional[str] = None,
    dimensions: Optional[Mapping[str, str]] = None,
    on_error: str = "skip",
) -> _metering:
    """Meter a block of code (``with`` or ``async with``); see :meth:`MeterClient.metering`.

    Example::

        with meterstream.metering("gpu_seconds") as usage:
            usage.value = run_job()
    """
    return _metering(
        get_client,
        event_name,
        customer=customer,
        identifier=identifier,
        dimensions=dimensions,
        on_error=on_error,
    )


def record(
    event_name: str,
    value: Any = 1,
    *,
    customer: Optional[str] = None,
    identifier: Optional[str] = None,
    dimensions: Optional[Mapping[str, str]] = None,
    timestamp: Any = None,
) -> None:
    """Record one use now through the default client; see :meth:`MeterClient.record`."""
    get_client().record(
        event_name,
        value,
        customer=customer,
        identifier=identifier,
        dimensions=dimensions,
        timestamp=timestamp,
    )


def flush(timeout: Optional[float] = 5.0) -> bool:
    """Settle everything recorded so far: True when, within *timeout*, every event was
    delivered, or refused and reported (``on_delivery_error``, ``stats()``)."""
    return get_client().flush(timeout)


def shutdown(timeout: Optional[float] = None) -> bool:
    """Drain and stop the default client (default timeout: ``shutdown_timeout``)."""
    return get_client().shutdown(timeout)


def stats() -> dict[str, int]:
    """The default client's counters; see :meth:`MeterClient.stats`."""
    return get_client().stats()
