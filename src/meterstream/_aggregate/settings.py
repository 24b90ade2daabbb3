"""The ``aggregate`` and ``aggregation_window`` settings, and which meters may be folded.

Parsers take ``(raw, where)`` like the others in ``_config`` (*where* is the
setting or environment variable to blame) and raise ``ConfigurationError``
naming it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from meterstream.errors import ConfigurationError

__all__ = [
    "AGGREGATE_MODES",
    "WINDOWS",
    "MetersSource",
    "apply_meter_check",
    "check_aggregate_against_disabled",
    "parse_aggregate",
    "parse_aggregation_window",
    "unaggregatable_names",
]

logger = logging.getLogger("meterstream")

#: How uses of an event name may be folded. Only ``sum``: folding is correct
#: for a meter that adds values, and for no other formula.
AGGREGATE_MODES = ("sum",)
#: Window lengths in seconds: those that divide a minute, so that windows
#: aligned to the wall clock never straddle a minute (nor an hour or a day),
#: the buckets of Stripe's event summaries.
WINDOWS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)
DEFAULT_WINDOW = 5


def parse_aggregate(raw: Any, where: str = "aggregate") -> dict[str, str]:
    """``{event_name: "sum"}`` from a dict, a JSON object, or ``"name=sum,name2=sum"``."""
    if raw is None:
        return {}
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return {}
        if text.startswith("{"):
            try:
                raw = json.loads(text)
            except ValueError as exc:
                raise ConfigurationError(f"{where}: expected a JSON object, {exc}") from None
        else:
            pairs: dict[str, Any] = {}
            for item in text.split(","):
                if not item.strip():
                    continue
                name, sep, mode = item.partition("=")
                if not sep:
                    raise ConfigurationError(
                        f"{where}: expected event_name=sum pairs separated by commas, "
                        f"got {item.strip()!r}"
                    )
                pairs[name.strip()] = mode.strip()
            raw = pairs
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            f'{where}: expected {{event_name: "sum"}} (a dict, a JSON object or '
            f'"name=sum,..."), got {raw!r}'
        )
    result: dict[str, str] = {}
    for name, mode in raw.items():
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise ConfigurationError(
                f"{where}: event names must be strings of 1..100 characters, got {name!r}"
            )
        normal = mode.strip().lower() if isinstance(mode, str) else mode
        if normal not in AGGREGATE_MODES:
            raise ConfigurationError(
                f"{where}[{name!r}]: unknown aggregation mode {mode!r}; expected one of "
                f"{', '.join(AGGREGATE_MODES)} (count and last meters cannot be folded)"
            )
        result[name] = normal
    return result


def parse_aggregation_window(raw: Any, where: str = "aggregation_window") -> int:
    """Whole seconds that divide a minute: 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60."""
    value: Any = None
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, int):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str):
        try:
            number = float(raw.strip())
        except ValueError:
            number = float("nan")
        if number.is_integer():
            value = int(number)
    if value not in WINDOWS:
        raise ConfigurationError(
            f"{where}: must be whole seconds between 1 and 60 that divide a minute "
            f"({', '.join(map(str, WINDOWS))}), so no window straddles a minute; got {raw!r}"
        )
    return int(value)


def check_aggregate_against_disabled(
    aggregate: Mapping[str, str],
    disabled_events: Iterable[str],
    where: str = "aggregate",
) -> None:
    """An event name cannot be both folded and disabled: one of the two is a mistake."""
    both = sorted(set(aggregate) & set(disabled_events))
    if both:
        raise ConfigurationError(
            f"{where}: {', '.join(map(repr, both))} also in disabled_events; "
            "an event name is either aggregated or disabled"
        )


# -- which meters sum ---------------------------------------------------------------


class MetersSource(Protocol):
    """What can list Stripe's meters: the v1 API client (``StripeAPI``) has it."""

    def meters(self) -> list[dict[str, Any]]: ...


def unaggregatable_names(
    meters: Iterable[Mapping[str, Any]], names: Iterable[str]
) -> dict[str, str]:
    """Which of *names* must not be folded, given Stripe's meters, with the reason.

    A name is foldable only when every active meter with that ``event_name``
    sums (``default_aggregation.formula == "sum"``). A ``count`` meter counts
    events and a ``last`` meter keeps the last value: folding would
    under-bill both. A name with no active meter cannot be confirmed, so it
    is not folded either (its events are refused until the meter exists, and
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
    """Read the meters and stop folding names whose meter does not sum.

    One WARNING per refused name (``aggregate_refused`` in the folder's
    stats counts them). When the meters cannot be read (no permission, no
    network), folding goes on as configured and that is logged: the
    setting is the user's statement that these meters sum.

    Returns the names refused by this call, with the reason.
    """
    try:
        meters = source.meters()
    except Exception as exc:
        logger.warning(
            "could not read the meters to check that aggregated event names "
            "sum (%s); folding %s as configured",
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
