"""Which meters may be aggregated: only those that sum, as Stripe's meters say.

The ``aggregate`` and ``aggregation_window`` settings themselves are parsed
by :mod:`meterstream._config.aggregate`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["MetersSource", "apply_meter_check", "unaggregatable_names"]

logger = logging.getLogger("meterstream")

# -- which meters sum ---------------------------------------------------------------


@runtime_checkable
class MetersSource(Protocol):
    """What can list Stripe's meters: the v1 API client (``StripeAPI``) and the
    Stripe exporter are sources; a client's aggregation asks its exporter."""

    def meters(self) -> list[dict[str, Any]]: ...


def unaggregatable_names(
    meters: Iterable[Mapping[str, Any]], names: Iterable[str]
) -> dict[str, str]:
    """Which of *names* must not be aggregated, given Stripe's meters, with the reason.

    A name is aggregatable only when every active meter with that ``event_name``
    sums (``default_aggregation.formula == "sum"``). A ``count`` meter counts
    events and a ``last`` meter keeps the last value: aggregating would
    under-bill both. A name with no active meter cannot be confirmed, so it
    is not aggregated either (its events are refused until the meter exists, and
    a meter created later may not sum).
    """
    formulas: dict[str, set[str]] = {}
    for meter in meters:
        if meter.get("status", "active") != "active":
            continue
        event_name = meter.get("event_name")
        aggregation = meter.get("default_aggregation") or {}
        formula = aggregation.get("formula") if isinstance(aggregation, Mapping) else None
        if isinstance(event_name, str):
            formulas.setdefault(event_name, set()).add(str(formula))
    refused: dict[str, str] = {}
    for name in names:
        found = formulas.get(name)
        if not found:
            refused[name] = "no active meter has this event name"
        elif found != {"sum"}:
            kinds = ", ".join(sorted(found - {"sum"}))
            refused[name] = f"its meter aggregates with {kinds!r}, not 'sum'"
    return refused


class _Refusable(Protocol):
    @property
    def names(self) -> frozenset[str]: ...

    def refuse(self, event_name: str, reason: str) -> bool: ...


def apply_meter_check(aggregator: _Refusable, source: MetersSource) -> dict[str, str]:
    """Read the meters and stop aggregating names whose meter does not sum.

    One WARNING per refused name (``aggregate_refused`` in the aggregator's
    stats counts them). When the meters cannot be read (no permission, no
    network), aggregating goes on as configured and that is logged: the
    setting is the user's statement that these meters sum.

    Returns the names refused by this call, with the reason.
    """
    try:
        meters = source.meters()
    except Exception as exc:
        logger.warning(
            "could not read the meters to check that aggregated event names "
            "sum (%s); aggregating %s as configured",
            exc,
            ", ".join(sorted(aggregator.names)) or "nothing",
        )
        return {}
    refused = {}
    for name, reason in unaggregatable_names(meters, aggregator.names).items():
        if aggregator.refuse(name, reason):
            refused[name] = reason
            logger.warning(
                "will not aggregate %r: %s; its uses are sent one event each",
                name,
                reason,
            )
    return refused
