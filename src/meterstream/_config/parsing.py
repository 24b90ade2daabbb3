"""Parsers of setting values.

Each takes the raw value (a keyword argument's value, or an environment
variable's string) and the name to blame (the keyword or the variable), and
returns the typed value or raises ConfigurationError naming it.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional

from meterstream.errors import ConfigurationError, short_repr

__all__ = [
    "EXPORTERS",
    "MISSING_CUSTOMER_POLICIES",
    "OVERFLOW_POLICIES",
    "SYNC_MODES",
    "DeliveryErrorCallback",
    "import_dotted",
    "in_range",
    "one_of",
    "or_default",
    "parse_api_key",
    "parse_auto_bool",
    "parse_bool",
    "parse_callback",
    "parse_choice",
    "parse_exporter",
    "parse_key_or_empty",
    "parse_names",
    "parse_number",
    "parse_opt_str",
    "parse_payload_key",
    "parse_payload_keys",
    "parse_url",
    "unsupported",
]

EXPORTERS = ("stripe", "log", "memory", "none", "nats", "metronome")
OVERFLOW_POLICIES = ("drop_newest", "drop_oldest", "block")
MISSING_CUSTOMER_POLICIES = ("warn", "raise", "drop")
#: The ``spool_sync`` modes: ``normal`` is safe from a process crash, ``full`` from power loss too.
SYNC_MODES = ("normal", "full")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

DeliveryErrorCallback = Callable[[list[dict[str, Any]], BaseException], None]


# -- parsers: each takes the raw value (from kwargs or the environment) and
# -- the name to blame, and returns the typed value or raises ConfigurationError.


def parse_bool(raw: Any, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ConfigurationError(
        f"{where}: expected a boolean (true/false/1/0/yes/no/on/off), got {short_repr(raw)}"
    )


def parse_number(raw: Any, where: str, *, integer: bool, low: float, high: float = math.inf) -> Any:
    value: Any
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, str):
        try:
            value = int(raw.strip()) if integer else float(raw.strip())
        except ValueError:
            value = None
    elif isinstance(raw, int) or (not integer and isinstance(raw, float)):
        value = raw
    else:
        value = None
    kind = "an integer" if integer else "a number"
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        raise ConfigurationError(f"{where}: expected {kind}, got {short_repr(raw)}")
    if not (low <= value <= high):
        bounds = f"between {low:g} and {high:g}" if high != math.inf else f"at least {low:g}"
        raise ConfigurationError(f"{where}: must be {bounds}, got {short_repr(raw)}")
    return value


def parse_auto_bool(raw: Any, where: str) -> Optional[bool]:
    if raw is None or (isinstance(raw, str) and raw.strip().lower() == "auto"):
        return None
    return parse_bool(raw, where)


def parse_key_or_empty(raw: Any, where: str) -> str:
    if raw == "":
        return ""
    return parse_payload_key(raw, where)


def parse_choice(raw: Any, where: str, choices: tuple[str, ...]) -> str:
    if isinstance(raw, str) and raw.strip().lower() in choices:
        return raw.strip().lower()
    raise ConfigurationError(
        f"{where}: expected one of {', '.join(choices)}; got {short_repr(raw)}"
    )


def parse_opt_str(raw: Any, where: str) -> Optional[str]:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw.strip() or None
    raise ConfigurationError(f"{where}: expected a string, got {type(raw).__name__}")


def parse_api_key(raw: Any, where: str) -> Optional[str]:
    key = parse_opt_str(raw, where)
    # The key goes into an Authorization header: anything but printable
    # ASCII would fail every request later. Never show the key itself.
    if key is not None and not all("!" <= ch <= "~" for ch in key):
        raise ConfigurationError(
            f"{where}: a Stripe secret key is printable ASCII with no spaces; this one has "
            "other characters (a copy-paste accident?). The key is not shown."
        )
    if key is not None and key.startswith("pk_"):
        # Stripe answers 401 to every meter event session a publishable key
        # asks for: say so now, not once per delivery attempt later.
        raise ConfigurationError(
            f"{where}: this is a publishable key (pk_...), which cannot send meter events; "
            "use a secret key (sk_...) or a restricted key (rk_...) with meter event "
            "write access. The key is not shown."
        )
    return key


def parse_url(raw: Any, where: str) -> str:
    value = parse_opt_str(raw, where)
    if not value or not value.lower().startswith(("http://", "https://")):
        raise ConfigurationError(
            f"{where}: expected an http:// or https:// URL, got {short_repr(raw)}"
        )
    problem = _url_problem(value)
    if problem:
        raise ConfigurationError(f"{where}: {problem}, got {short_repr(raw)}")
    return value.rstrip("/")


_BRACKETED = re.compile(r"\[[^\[\]]+\](:[0-9]*)?\Z")


def _url_problem(url: str) -> Optional[str]:
    """Why *url* (http or https) cannot be requested, or None."""
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        return "a URL cannot contain spaces or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:  # unbalanced brackets
        return f"not a valid URL ({exc})"
    hostport = parts.netloc.rpartition("@")[2]
    if hostport.startswith("[") and not _BRACKETED.match(hostport):
        return "the host's brackets are not balanced, or something follows them"
    try:
        port = parts.port
    except ValueError:
        return "the port must be a number in 1..65535"
    if not parts.hostname:
        return "the URL has no host"
    if port is not None and not 1 <= port <= 65535:
        return f"the port must be a number in 1..65535, not {port}"
    if hostport.endswith(":"):
        return "the URL's port is empty"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "the URL cannot have a query or a fragment (a path prefix is fine)"
    return None


def parse_names(raw: Any, where: str) -> frozenset[str]:
    if isinstance(raw, str):
        items: Iterable[Any] = (part.strip() for part in raw.split(","))
    elif isinstance(raw, Iterable):
        items = raw
    else:
        raise ConfigurationError(
            f"{where}: expected a list of event names (or a comma-separated string),"
            f" got {short_repr(raw)}"
        )
    names = set()
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(
                f"{where}: event names must be strings, got {short_repr(item)}"
            )
        if item:
            names.add(item)
    return frozenset(names)


def parse_payload_key(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw or len(raw) > 100:
        raise ConfigurationError(
            f"{where}: expected a payload key of 1..100 characters, got {short_repr(raw)}"
        )
    return raw


def parse_payload_keys(raw: Any, where: str) -> dict[str, tuple[Optional[str], Optional[str]]]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{where}: expected JSON, {exc}") from None
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            f'{where}: expected {{event_name: {{"customer": key, "value": key}}}},'
            f" got {short_repr(raw)}"
        )
    result: dict[str, tuple[Optional[str], Optional[str]]] = {}
    for event_name, keys in raw.items():
        if not isinstance(keys, Mapping) or not set(keys) <= {"customer", "value"} or not keys:
            raise ConfigurationError(
                f'{where}[{event_name!r}]: expected a dict with "customer" and/or "value", '
                f"got {short_repr(keys)}"
            )
        customer_key = keys.get("customer")
        value_key = keys.get("value")
        result[str(event_name)] = (
            None
            if customer_key is None
            else parse_payload_key(customer_key, f"{where}[{event_name!r}].customer"),
            None
            if value_key is None
            else parse_payload_key(value_key, f"{where}[{event_name!r}].value"),
        )
    return result


def parse_callback(raw: Any, where: str) -> Optional[DeliveryErrorCallback]:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = import_dotted(raw, where)
    if not callable(raw):
        raise ConfigurationError(
            f"{where}: expected a callable (events, error), got {short_repr(raw)}"
        )
    return raw  # type: ignore[no-any-return]


def import_dotted(path: str, where: str) -> Any:
    module_name, sep, attr = path.strip().partition(":")
    if not sep:
        module_name, _, attr = path.strip().rpartition(".")
    if module_name.startswith(".") or not module_name or not attr:
        raise ConfigurationError(
            f"{where}: cannot import {path!r}: give the full path of a module and a name, "
            "'package.module:function' (a relative path has no package to start from)"
        )
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"{where}: cannot import {path!r}: {exc}") from None
    return obj


def parse_exporter(raw: Any, where: str) -> Any:
    if isinstance(raw, str):
        return parse_choice(raw, where, EXPORTERS)
    if hasattr(raw, "export") and hasattr(raw, "shutdown"):
        return raw  # an Exporter instance
    raise ConfigurationError(
        f"{where}: expected one of {', '.join(EXPORTERS)} or an Exporter instance,"
        f" got {short_repr(raw)}"
    )


def unsupported(issue: str) -> Callable[[Any, str], Any]:
    def parse(raw: Any, where: str) -> Any:
        if raw is None or (isinstance(raw, (str, dict)) and not raw):
            return None
        raise ConfigurationError(
            f"{where}: {issue} is not supported yet by this version of meterstream; "
            "it is refused rather than silently ignored"
        )

    return parse


def in_range(integer: bool, low: float, high: float = math.inf) -> Callable[[Any, str], Any]:
    return lambda raw, where: parse_number(raw, where, integer=integer, low=low, high=high)


def one_of(choices: tuple[str, ...]) -> Callable[[Any, str], str]:
    return lambda raw, where: parse_choice(raw, where, choices)


def or_default(default: str) -> Callable[[Any, str], str]:
    """A string that falls back to *default* when empty."""
    return lambda raw, where: parse_opt_str(raw, where) or default
