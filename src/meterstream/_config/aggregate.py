"""The parsers of the ``aggregate`` and ``aggregation_window`` settings.

They take ``(raw, where)`` like the others in ``_config`` (*where* is the
setting or environment variable to blame) and raise ``ConfigurationError``
naming it. Which meters may really be aggregated is asked of Stripe later:
:mod:`meterstream._aggregate.meters`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from meterstream.errors import ConfigurationError, short_repr

__all__ = [
    "AGGREGATE_MODES",
    "WINDOWS",
    "check_aggregate_against_disabled",
    "parse_aggregate",
    "parse_aggregation_window",
]

#: How uses of an event name may be aggregated. Only ``sum``: aggregating is correct
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
            f'"name=sum,..."), got {short_repr(raw)}'
        )
    result: dict[str, str] = {}
    for name, mode in raw.items():
        if not isinstance(name, str) or not 1 <= len(name) <= 100:
            raise ConfigurationError(
                f"{where}: event names must be strings of 1..100 characters, got {short_repr(name)}"
            )
        normal = mode.strip().lower() if isinstance(mode, str) else mode
        if normal not in AGGREGATE_MODES:
            raise ConfigurationError(
                f"{where}[{name!r}]: unknown aggregation mode {short_repr(mode)}; expected one of "
                f"{', '.join(AGGREGATE_MODES)} (count and last meters cannot be aggregated)"
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
            f"({', '.join(map(str, WINDOWS))}), so no window straddles a minute;"
            f" got {short_repr(raw)}"
        )
    return int(value)


def check_aggregate_against_disabled(
    aggregate: Mapping[str, str],
    disabled_events: Iterable[str],
    where: str = "aggregate",
) -> None:
    """An event name cannot be both aggregated and disabled: one of the two is a mistake."""
    both = sorted(set(aggregate) & set(disabled_events))
    if both:
        raise ConfigurationError(
            f"{where}: {', '.join(map(repr, both))} also in disabled_events; "
            "an event name is either aggregated or disabled"
        )
