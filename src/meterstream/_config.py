"""Settings: keyword arguments > ``METERSTREAM_*`` environment variables > defaults."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import math
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional

from ._nats import parse_file, parse_nats_stream, parse_nats_urls, redact_nats_urls
from ._network import parse_ca_bundle, parse_proxy, redact_url
from .errors import ConfigurationError

__all__ = ["DEFAULT_STRIPE_VERSION", "Settings"]

#: The ``Stripe-Version`` header we send unless told otherwise: the version
#: stripe-python 16.1 pins, so our requests look like the official client's.
DEFAULT_STRIPE_VERSION = "2026-10-28.endive"
DEFAULT_API_BASE = "https://api.stripe.com"
DEFAULT_STREAM_BASE = "https://meter-events.stripe.com"

EXPORTERS = ("stripe", "log", "memory", "none", "nats")
OVERFLOW_POLICIES = ("drop_newest", "drop_oldest", "block")
MISSING_CUSTOMER_POLICIES = ("warn", "raise", "drop")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

DeliveryErrorCallback = Callable[[list[dict[str, Any]], BaseException], None]


def _env_name(name: str) -> str:
    return "METERSTREAM_" + name.upper()


# -- parsers: each takes the raw value (from kwargs or the environment) and
# -- the name to blame, and returns the typed value or raises ConfigurationError.


def _bool(raw: Any, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ConfigurationError(
        f"{where}: expected a boolean (true/false/1/0/yes/no/on/off), got {raw!r}"
    )


def _number(raw: Any, where: str, *, integer: bool, low: float, high: float = math.inf) -> Any:
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
        raise ConfigurationError(f"{where}: expected {kind}, got {raw!r}")
    if not (low <= value <= high):
        bounds = f"between {low:g} and {high:g}" if high != math.inf else f"at least {low:g}"
        raise ConfigurationError(f"{where}: must be {bounds}, got {raw!r}")
    return value


def _auto_bool(raw: Any, where: str) -> Optional[bool]:
    if raw is None or (isinstance(raw, str) and raw.strip().lower() == "auto"):
        return None
    return _bool(raw, where)


def _key_or_empty(raw: Any, where: str) -> str:
    if raw == "":
        return ""
    return _payload_key(raw, where)


def _choice(raw: Any, where: str, choices: tuple[str, ...]) -> str:
    if isinstance(raw, str) and raw.strip().lower() in choices:
        return raw.strip().lower()
    raise ConfigurationError(f"{where}: expected one of {', '.join(choices)}; got {raw!r}")


def _opt_str(raw: Any, where: str) -> Optional[str]:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw.strip() or None
    raise ConfigurationError(f"{where}: expected a string, got {type(raw).__name__}")


def _api_key(raw: Any, where: str) -> Optional[str]:
    key = _opt_str(raw, where)
    # The key goes into an Authorization header: anything but printable
    # ASCII would fail every request later. Never show the key itself.
    if key is not None and not all("!" <= ch <= "~" for ch in key):
        raise ConfigurationError(
            f"{where}: a Stripe secret key is printable ASCII with no spaces; this one has "
            "other characters (a copy-paste accident?). The key is not shown."
        )
    return key


def _url(raw: Any, where: str) -> str:
    value = _opt_str(raw, where)
    if not value or not value.lower().startswith(("http://", "https://")):
        raise ConfigurationError(f"{where}: expected an http:// or https:// URL, got {raw!r}")
    problem = _url_problem(value)
    if problem:
        raise ConfigurationError(f"{where}: {problem}, got {raw!r}")
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


def _names(raw: Any, where: str) -> frozenset[str]:
    if isinstance(raw, str):
        items: Iterable[Any] = (part.strip() for part in raw.split(","))
    elif isinstance(raw, Iterable):
        items = raw
    else:
        raise ConfigurationError(
            f"{where}: expected a list of event names (or a comma-separated string), got {raw!r}"
        )
    names = set()
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(f"{where}: event names must be strings, got {item!r}")
        if item:
            names.add(item)
    return frozenset(names)


def _payload_key(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw or len(raw) > 100:
        raise ConfigurationError(
            f"{where}: expected a payload key of 1..100 characters, got {raw!r}"
        )
    return raw


def _payload_keys(raw: Any, where: str) -> dict[str, tuple[Optional[str], Optional[str]]]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{where}: expected JSON, {exc}") from None
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            f'{where}: expected {{event_name: {{"customer": key, "value": key}}}}, got {raw!r}'
        )
    result: dict[str, tuple[Optional[str], Optional[str]]] = {}
    for event_name, keys in raw.items():
        if not isinstance(keys, Mapping) or not set(keys) <= {"customer", "value"} or not keys:
            raise ConfigurationError(
                f'{where}[{event_name!r}]: expected a dict with "customer" and/or "value", '
                f"got {keys!r}"
            )
        customer_key = keys.get("customer")
        value_key = keys.get("value")
        result[str(event_name)] = (
            None
            if customer_key is None
            else _payload_key(customer_key, f"{where}[{event_name!r}].customer"),
            None
            if value_key is None
            else _payload_key(value_key, f"{where}[{event_name!r}].value"),
        )
    return result


def _callback(raw: Any, where: str) -> Optional[DeliveryErrorCallback]:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = _import_dotted(raw, where)
    if not callable(raw):
        raise ConfigurationError(f"{where}: expected a callable (events, error), got {raw!r}")
    return raw  # type: ignore[no-any-return]


def _import_dotted(path: str, where: str) -> Any:
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


def _exporter(raw: Any, where: str) -> Any:
    if isinstance(raw, str):
        return _choice(raw, where, EXPORTERS)
    if hasattr(raw, "export") and hasattr(raw, "shutdown"):
        return raw  # an Exporter instance
    raise ConfigurationError(
        f"{where}: expected one of {', '.join(EXPORTERS)} or an Exporter instance, got {raw!r}"
    )


def _unsupported(issue: str) -> Callable[[Any, str], Any]:
    def parse(raw: Any, where: str) -> Any:
        if raw is None or (isinstance(raw, (str, dict)) and not raw):
            return None
        raise ConfigurationError(
            f"{where}: {issue} is not supported yet by this version of meterstream; "
            "it is refused rather than silently ignored"
        )

    return parse


def _pos(integer: bool, low: float, high: float = math.inf) -> Callable[[Any, str], Any]:
    return lambda raw, where: _number(raw, where, integer=integer, low=low, high=high)


# name -> (parser, default). A default of _COMPUTED is filled in by Settings.
_COMPUTED = object()
_FIELDS: dict[str, tuple[Callable[[Any, str], Any], Any]] = {
    "enabled": (_bool, True),
    "api_key": (_api_key, _COMPUTED),
    "exporter": (_exporter, _COMPUTED),
    "api_base": (_url, DEFAULT_API_BASE),
    "stream_base": (_url, DEFAULT_STREAM_BASE),
    "stripe_version": (
        lambda raw, where: _opt_str(raw, where) or DEFAULT_STRIPE_VERSION,
        DEFAULT_STRIPE_VERSION,
    ),
    "batch_size": (_pos(True, 1, 100), 100),
    "flush_interval": (_pos(False, 0.001), 1.0),
    "max_queue_size": (_pos(True, 1), 100_000),
    "overflow": (lambda raw, where: _choice(raw, where, OVERFLOW_POLICIES), "drop_newest"),
    "block_timeout": (_pos(False, 0), 1.0),
    "on_missing_customer": (
        lambda raw, where: _choice(raw, where, MISSING_CUSTOMER_POLICIES),
        "warn",
    ),
    "raise_errors": (_bool, False),
    "spool_path": (_unsupported("spool_path (durable spool)"), None),
    "disabled_events": (_names, frozenset()),
    "max_retry_time": (_pos(False, 0), 300.0),
    "retry_initial_delay": (_pos(False, 0), 0.5),
    "retry_max_delay": (_pos(False, 0), 20.0),
    "shutdown_timeout": (_pos(False, 0), 5.0),
    "request_timeout": (_pos(False, 0.001), 10.0),
    "max_concurrent_requests": (_pos(True, 1, 64), 4),
    "http2": (_bool, False),
    "proxy": (parse_proxy, None),
    "ca_bundle": (parse_ca_bundle, None),
    "on_delivery_error": (_callback, None),
    "aggregate": (_unsupported("aggregate (folding uses into one event)"), None),
    "aggregation_window": (_unsupported("aggregation_window"), None),
    "sync_mode": (_bool, False),
    "customer_payload_key": (_payload_key, "stripe_customer_id"),
    "value_payload_key": (_payload_key, "value"),
    "payload_keys": (_payload_keys, {}),
    "otel_span_events": (_auto_bool, None),
    "otel_record_customer": (_bool, False),
    "otel_baggage_key": (_key_or_empty, "meterstream.customer_id"),
    # Fleet mode (exporter="nats", docs/fleet.md).
    "nats_url": (parse_nats_urls, None),
    "nats_stream": (parse_nats_stream, "METERSTREAM"),
    "nats_credentials": (parse_file, None),
    "nats_tls_ca": (parse_file, None),
    "nats_tls_cert": (parse_file, None),
    "nats_tls_key": (parse_file, None),
    "nats_replicas": (_pos(True, 1, 5), 1),
}

SETTING_NAMES = tuple(_FIELDS)


class Settings:
    """The resolved configuration of one client. Read-only by convention.

    Build with :meth:`Settings.resolve`; every setting is also an environment
    variable ``METERSTREAM_<NAME>``, and keyword arguments win over it.
    """

    enabled: bool
    api_key: Optional[str]
    exporter: Any
    api_base: str
    stream_base: str
    stripe_version: str
    batch_size: int
    flush_interval: float
    max_queue_size: int
    overflow: str
    block_timeout: float
    on_missing_customer: str
    raise_errors: bool
    spool_path: None
    disabled_events: frozenset[str]
    max_retry_time: float
    retry_initial_delay: float
    retry_max_delay: float
    shutdown_timeout: float
    request_timeout: float
    max_concurrent_requests: int
    http2: bool
    proxy: Optional[str]
    ca_bundle: Optional[str]
    on_delivery_error: Optional[DeliveryErrorCallback]
    aggregate: None
    aggregation_window: None
    sync_mode: bool
    customer_payload_key: str
    value_payload_key: str
    payload_keys: dict[str, tuple[Optional[str], Optional[str]]]
    otel_span_events: Optional[bool]
    otel_record_customer: bool
    otel_baggage_key: str
    nats_url: Optional[str]
    nats_stream: str
    nats_credentials: Optional[str]
    nats_tls_ca: Optional[str]
    nats_tls_cert: Optional[str]
    nats_tls_key: Optional[str]
    nats_replicas: int

    @classmethod
    def resolve(
        cls, kwargs: Mapping[str, Any], environ: Optional[Mapping[str, str]] = None
    ) -> Settings:
        """Resolve settings from keyword arguments, then the environment, then defaults.

        Raises:
            ConfigurationError: an unknown setting, or a value that does not parse;
                the message names the keyword or environment variable at fault.
        """
        env = os.environ if environ is None else environ
        unknown = [name for name in kwargs if name not in _FIELDS]
        if unknown:
            name = unknown[0]
            close = difflib.get_close_matches(name, SETTING_NAMES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(f"unknown setting {name!r}{hint}")
        self = cls.__new__(cls)
        for name, (parse, default) in _FIELDS.items():
            if name in kwargs and kwargs[name] is not None:
                value = parse(kwargs[name], name)
            elif _env_name(name) in env:
                value = parse(env[_env_name(name)], _env_name(name))
            elif default is _COMPUTED:
                value = None
            else:
                value = default
            object.__setattr__(self, name, value)
        if self.api_key is None:
            self.api_key = _api_key(env.get("STRIPE_API_KEY"), "STRIPE_API_KEY")
        if self.exporter is None:
            self.exporter = "stripe" if self.api_key else "log"
        for event_name in ("", *self.payload_keys):
            customer_key, value_key = self.payload_keys_for(event_name)
            if customer_key == value_key:
                where = f"payload_keys[{event_name!r}]" if event_name else "customer_payload_key"
                raise ConfigurationError(
                    f"{where}: the customer and the value cannot share the payload key "
                    f"{customer_key!r}"
                )
        if self.exporter == "stripe" and not self.api_key:
            raise ConfigurationError(
                "exporter: 'stripe' needs an api_key (or METERSTREAM_API_KEY / STRIPE_API_KEY)"
            )
        if self.exporter == "stripe" and self.http2 and importlib.util.find_spec("h2") is None:
            where = "http2" if "http2" in kwargs else _env_name("http2")
            raise ConfigurationError(
                f"{where}: HTTP/2 needs the h2 package: pip install 'meterstream[http2]'"
            )
        return self

    def payload_keys_for(self, event_name: str) -> tuple[str, str]:
        """The (customer key, value key) of *event_name*'s payload."""
        override = self.payload_keys.get(event_name)
        if override is None:
            return self.customer_payload_key, self.value_payload_key
        return (
            override[0] or self.customer_payload_key,
            override[1] or self.value_payload_key,
        )

    def __repr__(self) -> str:
        parts = []
        for name in _FIELDS:
            value = getattr(self, name)
            if name == "api_key" and value is not None:
                value = redact_key(value)
            elif name == "proxy" and value is not None:
                value = redact_url(value)
            elif name == "nats_url" and value is not None:
                value = redact_nats_urls(value)
            parts.append(f"{name}={value!r}")
        return f"Settings({', '.join(parts)})"


def redact_key(key: str) -> str:
    """Show what kind of key this is (``sk_test_``...) and nothing of its secret part."""
    prefix, sep, _ = key.rpartition("_")
    return f"{prefix}{sep}***" if sep and len(prefix) <= 12 else "***"
