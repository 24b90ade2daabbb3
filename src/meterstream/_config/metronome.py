"""Parsers of the Metronome settings: the bearer token and the value keys."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Optional

from meterstream._config.parsing import parse_opt_str, parse_payload_key
from meterstream.errors import ConfigurationError

__all__ = ["DEFAULT_METRONOME_BASE", "parse_metronome_token", "parse_metronome_value_keys"]

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
