"""Parsers of the Metronome settings: the bearer token and the value keys."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Optional

from meterstream._config.parsing import parse_opt_str, parse_payload_key
from meterstream._config.setting import UNSET
from meterstream.errors import ConfigurationError

__all__ = [
    "DEFAULT_METRONOME_BASE",
    "DESTINATIONS",
    "STAND_INS",
    "exporter_for_destinations",
    "parse_destinations",
    "parse_metronome_token",
    "parse_metronome_value_keys",
]

DEFAULT_METRONOME_BASE = "https://api.metronome.com"


def parse_metronome_token(raw: Any, where: str) -> Optional[str]:
    token = parse_opt_str(raw, where)
    # It goes into an Authorization header: never show it.
    if token is not None and not all("!" <= ch <= "~" for ch in token):
        raise ConfigurationError(
            f"{where}: a Metronome token is printable ASCII with no spaces; this one has other "
            "characters (a copy-paste accident?). The token is not shown."
        )
    return token


def parse_metronome_value_keys(raw: Any, where: str) -> dict[str, str]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{where}: expected JSON, {exc}") from None
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{where}: expected {{event_name: property}}, got {raw!r}")
    return {str(name): parse_payload_key(key, f"{where}[{name!r}]") for name, key in raw.items()}


#: What a destination may be: an exporter that delivers somewhere.
DESTINATIONS = ("stripe", "metronome", "nats", "log", "memory", "none")
#: Exporters that may stand in for every destination of a parallel run
#: (``exporter="memory"`` in tests, ``"log"`` for a dry run).
STAND_INS = ("log", "memory", "none")


def parse_destinations(raw: Any, where: str) -> tuple[str, ...]:
    """An ordered list of distinct destination names (comma-separated in the environment)."""
    if isinstance(raw, str):
        items: list[Any] = [part.strip() for part in raw.split(",") if part.strip()]
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        raise ConfigurationError(
            f"{where}: expected a list of destinations such as ['stripe', 'metronome'], got {raw!r}"
        )
    out: list[str] = []
    for item in items:
        if item not in DESTINATIONS:
            raise ConfigurationError(
                f"{where}: unknown destination {item!r} (one of {', '.join(DESTINATIONS)})"
            )
        if item in out:
            raise ConfigurationError(f"{where}: destination {item!r} is named twice")
        out.append(item)
    return tuple(out)


def exporter_for_destinations(exporter: Any, destinations: tuple[str, ...]) -> Any:
    """The ``exporter`` setting once ``destinations`` is known.

    One destination is the exporter of that name. With several, the
    ``exporter`` setting is the first destination's, unless it names a stand-in
    (``memory``, ``log``, ``none``) that every destination then uses instead.

    Raises:
        ConfigurationError: an ``exporter`` that contradicts ``destinations``.
    """
    if not destinations:
        return exporter
    if exporter is UNSET:
        return destinations[0]
    if len(destinations) == 1 and exporter == destinations[0]:
        return exporter
    if len(destinations) > 1 and exporter in STAND_INS:
        return exporter
    raise ConfigurationError(
        f"exporter: {exporter!r} contradicts destinations={list(destinations)!r}: name the "
        "destinations alone (or exporter='memory' / 'log' / 'none' to stand in for all of them)"
    )
