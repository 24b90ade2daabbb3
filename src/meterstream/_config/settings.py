"""Settings: keyword arguments > ``METERSTREAM_*`` environment variables > defaults.

Each setting is declared once, as a field of :class:`Settings`: its type is
the annotation, and ``_setting.setting`` gives its parser, default, environment
variables and the line of the configuration reference that explains it.
Everything else is derived from those declarations: :data:`SETTINGS`, the
resolution order, the repr, and the table in ``docs/configuration.md``
(``python -m meterstream._config.table``).

To add a setting, add one field here (and its parser to ``parsing`` if it
needs a new one); a value this version cannot honour yet uses
``unsupported``, so it is refused rather than silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
from collections.abc import Mapping
from typing import Any, Callable, Optional

from meterstream._config.aggregate import (
    check_aggregate_against_disabled,
    parse_aggregate,
    parse_aggregation_window,
)
from meterstream._config.metronome import (
    DEFAULT_METRONOME_BASE,
    exporter_for_destinations,
    parse_destinations,
    parse_metronome_token,
    parse_metronome_value_keys,
)
from meterstream._config.nats import (
    parse_file,
    parse_nats_stream,
    parse_nats_urls,
    redact_nats_urls,
)
from meterstream._config.network import parse_ca_bundle, parse_proxy, redact_url
from meterstream._config.parsing import (
    MISSING_CUSTOMER_POLICIES,
    OVERFLOW_POLICIES,
    SYNC_MODES,
    DeliveryErrorCallback,
    in_range,
    one_of,
    or_default,
    parse_api_key,
    parse_auto_bool,
    parse_bool,
    parse_callback,
    parse_exporter,
    parse_key_or_empty,
    parse_names,
    parse_opt_str,
    parse_payload_key,
    parse_payload_keys,
    parse_url,
)
from meterstream._config.setting import DECLARED, UNSET, Setting, read_setting, redact_key, setting
from meterstream.errors import ConfigurationError

__all__ = [
    "DEFAULT_STRIPE_VERSION",
    "destinations_given",
    "SETTINGS",
    "SETTING_NAMES",
    "Settings",
]

#: The ``Stripe-Version`` header we send unless told otherwise: the version
#: stripe-python 16.1 pins, so our requests look like the official client's.
DEFAULT_STRIPE_VERSION = "2026-10-28.endive"
DEFAULT_API_BASE = "https://api.stripe.com"
DEFAULT_STREAM_BASE = "https://meter-events.stripe.com"
DEFAULT_BAGGAGE_KEY = "meterstream.customer_id"


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class Settings:
    """The resolved configuration of one client (read-only).

    Build with :meth:`Settings.resolve`; every setting is also an environment
    variable ``METERSTREAM_<NAME>``, and keyword arguments win over it.
    """

    enabled: bool = setting(
        parse_bool,
        True,
        "`false`: decorators call straight through; nothing is recorded, no thread starts, "
        "no connection is opened",
    )
    api_key: Optional[str] = setting(
        parse_api_key,
        None,
        "secret key used to open meter event sessions; never logged, never in a `repr`. A key "
        "with anything but printable ASCII (a space, an accented letter, a zero-width "
        "character from a copy-paste) is refused at `configure()`, without showing it",
        shown="none",
        fallback_env=("STRIPE_API_KEY",),
        redact=redact_key,
    )
    exporter: Any = setting(
        parse_exporter,
        UNSET,
        "`stripe`, `log` (one JSON line per event on the `meterstream` logger at INFO), "
        "`memory` (tests: `client.exporter.events`), `none`, `nats` (fleet mode: "
        "[fleet](fleet.md)), or an `Exporter` instance; see "
        "[what `stats()` counts](#what-stats-counts)",
        shown="`stripe` with a key, else `log`",
    )
    api_base: str = setting(
        parse_url,
        DEFAULT_API_BASE,
        "where sessions are opened. An `http://` or `https://` URL with a host, an optional "
        "port 1..65535 and an optional path prefix; no query or fragment",
    )
    stream_base: str = setting(
        parse_url,
        DEFAULT_STREAM_BASE,
        "where events are sent; same rules as `api_base`",
    )
    stripe_version: str = setting(
        or_default(DEFAULT_STRIPE_VERSION),
        DEFAULT_STRIPE_VERSION,
        "the `Stripe-Version` header (stripe-python 16.1's pinned version)",
    )
    batch_size: int = setting(in_range(True, 1, 100), 100, "events per request, 1..100")
    flush_interval: float = setting(
        in_range(False, 0.001), 1.0, "seconds; the longest an event waits in the buffer"
    )
    max_queue_size: int = setting(
        in_range(True, 1), 100_000, "events the buffer holds; past it, `overflow` applies"
    )
    overflow: str = setting(
        one_of(OVERFLOW_POLICIES),
        "drop_newest",
        "`drop_newest`, `drop_oldest`, or `block` (the caller waits up to `block_timeout`, "
        "then the event is dropped)",
    )
    block_timeout: float = setting(
        in_range(False, 0), 1.0, "seconds `overflow=block` may hold a caller"
    )
    on_missing_customer: str = setting(
        one_of(MISSING_CUSTOMER_POLICIES),
        "warn",
        "`warn` (drop, count, log), `drop` (drop, count), `raise` (`MissingCustomerError`, "
        "whatever `raise_errors` says)",
    )
    raise_errors: bool = setting(
        parse_bool,
        False,
        "`true`: invalid input raises `InvalidEventError` in the caller, naming the field; "
        "`false`: it is dropped, counted and logged, and the metered call is unaffected, "
        "whatever the input (hostile objects included). Constants given to `@meter` fail at "
        "decoration time either way",
    )
    spool_path: Optional[str] = setting(
        parse_opt_str,
        None,
        "a spool between `record()` and delivery (a journal beside a SQLite file): events "
        "survive crashes, restarts and outages; several processes may share it "
        "([durability](durability.md)). `auto`: a per-user state directory named after the "
        "application (memory, with one WARNING, when it cannot be written). One that cannot "
        "be opened is a `ConfigurationError` naming `spool_path`",
        shown="unset",
    )
    spool_sync: str = setting(
        one_of(SYNC_MODES),
        "normal",
        "`normal`: an event is safe from a process crash once `record()` returns; `full`: "
        "also from power loss (an fdatasync shared by the threads recording at once)",
    )
    spool_max_bytes: int = setting(
        in_range(True, 1 << 20),
        1 << 30,
        "bytes of data the spool may hold (at least 1 MiB); past it, `overflow` applies and "
        "drops are counted (`dropped_spool_full`)",
    )
    spool_history_days: float = setting(
        in_range(False, 0, 400),
        35.0,
        "days the events Stripe accepted are kept in the spool, for `meterstream reconcile` "
        "and Stripe's late error reports; 0 keeps none",
    )
    spool_sync_interval: float = setting(
        in_range(False, 0, 3600),
        0.0,
        'seconds; with `spool_sync="normal"`, the journal is written to the disk this often '
        "in the background: a power loss loses at most this much; 0: left to the kernel",
    )
    spool_app: Optional[str] = setting(
        parse_opt_str,
        None,
        "the application's name under `spool_path=\"auto\"` (default: the program's, from "
        "`python -m` or `sys.argv[0]`)",
        shown="the program's name",
    )
    disabled_events: frozenset[str] = setting(
        parse_names,
        frozenset(),
        "event names recorded as no-ops (a list, or comma-separated in the environment)",
    )
    max_retry_time: float = setting(
        in_range(False, 0),
        300.0,
        "seconds a batch may spend retrying before it is a delivery failure",
    )
    retry_initial_delay: float = setting(
        in_range(False, 0),
        0.5,
        "seconds; the base of the backoff: an isolated failure is retried within an eighth of "
        "it; while the server fails broadly, waits start from it and double per failed "
        "request, with full jitter ([delivery](delivery.md#retries-and-pace))",
    )
    retry_max_delay: float = setting(
        in_range(False, 0),
        20.0,
        "seconds; the largest backoff ceiling of a batch; probes during an outage are spaced "
        "by at most 2 s (or this, when shorter), so delivery resumes soon after it ends",
    )
    shutdown_timeout: float = setting(
        in_range(False, 0), 5.0, "seconds `shutdown()` and exit wait for the buffer to drain"
    )
    request_timeout: float = setting(
        in_range(False, 0.001), 10.0, "seconds for one HTTP request (connecting: at most 5)"
    )
    max_concurrent_requests: int = setting(
        in_range(True, 1, 64),
        4,
        "batches the Stripe exporter may have in flight at once (1..64): one delivery thread each",
    )
    http2: bool = setting(
        parse_bool,
        False,
        "HTTP/2 to Stripe; needs `pip install 'meterstream[http2]'`, and `configure()` says so "
        "when it is missing (with the `stripe` exporter)",
    )
    proxy: Optional[str] = setting(
        parse_proxy,
        None,
        "an `http://` or `https://` proxy URL, optionally `http://user:password@host:port`, "
        "for every request to Stripe; when set it wins over the environment (`NO_PROXY` "
        "included). The password never appears in a `repr` or a log "
        "([delivery](delivery.md#proxies-and-ca-certificates))",
        shown="from `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY`, minus `NO_PROXY`",
        redact=redact_url,
    )
    ca_bundle: Optional[str] = setting(
        parse_ca_bundle,
        None,
        "a PEM file or a directory of CA certificates to verify Stripe (and an `https://` "
        "proxy) with; a path that does not exist, or a file that holds no certificate, is a "
        "`ConfigurationError` naming `ca_bundle`",
        shown="from `SSL_CERT_FILE` / `SSL_CERT_DIR` / `REQUESTS_CA_BUNDLE`, else certifi",
    )
    on_delivery_error: Optional[DeliveryErrorCallback] = setting(
        parse_callback,
        None,
        "callable `(events, error)` for events Stripe refused or that ran out of retries or "
        "time; in the environment, a dotted path `package.module:function` (or "
        "`package.module.function`); a relative path (`.handlers:cb`) is refused: there is no "
        "package to start from",
    )
    on_validation_error: Optional[Callable[[Any], None]] = setting(
        parse_callback,
        None,
        "callable `(report)` for Stripe's asynchronous error reports, a "
        "`meterstream.ValidationReport`; an exception in it is logged, never raised; in the "
        "environment, a dotted path (see [reconciliation](reconciliation.md))",
    )
    webhook_secret: Optional[str] = setting(
        parse_opt_str,
        None,
        "the `whsec_...` secret that verifies Stripe's webhook signatures (`handle_webhook` and "
        "the framework endpoints); never in a `repr`",
        shown="none",
        fallback_env=("STRIPE_WEBHOOK_SECRET",),
        redact=redact_key,
    )
    aggregate: dict[str, str] = setting(
        parse_aggregate,
        {},
        '`{event_name: "sum"}` (or `name=sum,...` in the environment): aggregate the uses of '
        "one customer, event name and dimensions within `aggregation_window` into one event whose "
        "value is their exact sum. Sum meters only: a name whose Stripe meter counts or takes "
        "the last value is sent one event per use, with a WARNING ([aggregation](aggregation.md))",
    )
    aggregation_window: int = setting(
        parse_aggregation_window,
        5,
        "seconds of one aggregation window, aligned to the wall clock: 1, 2, 3, 4, 5, 6, 10, "
        "12, 15, 20, 30 or 60 (so no window straddles a minute)",
    )
    sync_mode: bool = setting(
        parse_bool,
        False,
        "send before `record()` returns, on the caller's thread (serverless, sandboxes without "
        "threads)",
    )
    customer_payload_key: str = setting(
        parse_payload_key, "stripe_customer_id", "payload key of the customer"
    )
    value_payload_key: str = setting(parse_payload_key, "value", "payload key of the value")
    payload_keys: dict[str, tuple[Optional[str], Optional[str]]] = setting(
        parse_payload_keys,
        {},
        'per event name: `{"api_calls": {"customer": "account", "value": "count"}}`, as Stripe '
        "meters' `customer_mapping` / `value_settings` allow (JSON in the environment)",
    )
    otel_span_events: Optional[bool] = setting(
        parse_auto_bool,
        None,
        "a `meterstream.record` event on the current span per record (auto: while an "
        "OpenTelemetry SDK is installed)",
        shown="auto",
    )
    otel_record_customer: bool = setting(parse_bool, False, "the customer id on those span events")
    otel_baggage_key: str = setting(
        parse_key_or_empty,
        DEFAULT_BAGGAGE_KEY,
        "OpenTelemetry baggage key under which this client's `customer()` writes the customer "
        "and its lookups read it; empty: off. Written while an SDK is installed, or always "
        "when this setting is given ([observability](observability.md))",
    )
    # Fleet mode (exporter="nats", docs/fleet.md).
    nats_url: Optional[str] = setting(
        parse_nats_urls,
        None,
        '`exporter="nats"`: NATS server URL(s), comma-separated (`nats://h1:4222,nats://h2:4222`; '
        "`tls://`, `ws://`, `wss://` too; `nats://user:password@host` for user/password auth). "
        "Checked at start: a malformed URL, or one where no server answers, is a "
        "`ConfigurationError` naming `nats_url` ([fleet](fleet.md)); its secrets never in a `repr`",
        shown="unset",
        redact=redact_nats_urls,
    )
    nats_stream: str = setting(
        parse_nats_stream,
        "METERSTREAM",
        "the JetStream stream, created if missing (subjects `<stream>.events.>` and "
        "`<stream>.dead`, 2-minute duplicate window, 7 days, discard new when full)",
    )
    nats_credentials: Optional[str] = setting(
        parse_file,
        None,
        "a NATS `.creds` file (JWT + NKey); a missing file, or a server that refuses the "
        "connection for want of credentials, is a `ConfigurationError` naming `nats_credentials`",
        shown="unset",
    )
    nats_tls_ca: Optional[str] = setting(
        parse_file, None, "PEM file of the CA that verifies the NATS server", shown="unset"
    )
    nats_tls_cert: Optional[str] = setting(
        parse_file, None, "PEM client certificate for mutual TLS to NATS", shown="unset"
    )
    nats_tls_key: Optional[str] = setting(
        parse_file, None, "PEM key of `nats_tls_cert`", shown="unset"
    )
    nats_replicas: int = setting(
        in_range(True, 1, 5),
        1,
        "replicas of the stream when meterstream creates it (3 on a three-node cluster)",
    )
    # Metronome (exporter="metronome", docs/metronome.md).
    metronome_api_key: Optional[str] = setting(
        parse_metronome_token,
        None,
        '`exporter="metronome"`: the bearer token of Metronome\'s API; never logged, never in '
        "a `repr`. Without one the Metronome exporter is a dry run (the `log` exporter)",
        shown="none",
        fallback_env=("METRONOME_BEARER_TOKEN", "METRONOME_API_KEY"),
        redact=lambda _token: "***",
    )
    metronome_base: str = setting(
        parse_url,
        DEFAULT_METRONOME_BASE,
        "where usage events go (`/v1/ingest`); same rules as `api_base`",
    )
    metronome_value_keys: dict[str, str] = setting(
        parse_metronome_value_keys,
        {},
        'per event name, the Metronome property carrying the value (`{"llm_tokens": "tokens"}`, '
        "JSON in the environment); default: the event's Stripe value key (`value`)",
    )
    destinations: tuple[str, ...] = setting(
        parse_destinations,
        (),
        'a parallel run: every use goes to each destination named (`["stripe", "metronome"]`), '
        "each with its own buffer or spool, delivery, retries, dead letters and counts "
        "([metronome](metronome.md#parallel-run)); one name is the same as `exporter`",
        shown="none: the exporter alone",
    )
    check_event_names: bool = setting(
        parse_bool,
        True,
        "when the exporter can read the meters (Stripe's can): before the first events of "
        "each event name go, check that an active meter has that name, and log a WARNING "
        "once for a name that has none (Stripe would bill none of its events; "
        "`events_without_meter` in `stats()` counts them). The meters are read once, and "
        "again at most once a minute for a name they lack",
    )
    #: The settings given as a keyword or in the environment, not defaulted.
    _given: frozenset[str] = dataclasses.field(default=frozenset(), compare=False)

    @classmethod
    def resolve(
        cls, kwargs: Mapping[str, Any], environ: Optional[Mapping[str, str]] = None
    ) -> Settings:
        """Resolve settings from keyword arguments, then the environment, then defaults.

        A keyword whose value is None or :data:`UNSET` counts as not given.

        Raises:
            ConfigurationError: an unknown setting, or a value that does not parse;
                the message names the keyword or environment variable at fault.
        """
        env = os.environ if environ is None else environ
        unknown = [name for name in kwargs if name not in _BY_NAME]
        if unknown:
            name = unknown[0]
            close = difflib.get_close_matches(name, SETTING_NAMES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(f"unknown setting {name!r}{hint}")
        values: dict[str, Any] = {}
        given: set[str] = set()
        for declared in SETTINGS:
            values[declared.name] = read_setting(declared, kwargs, env, given)
        values["exporter"] = exporter_for_destinations(values["exporter"], values["destinations"])
        if values["exporter"] is UNSET:
            values["exporter"] = "stripe" if values["api_key"] else "log"
        self = cls(**values, _given=frozenset(given))
        self._check(kwargs)
        return self

    def _check(self, kwargs: Mapping[str, Any]) -> None:
        """What no single setting can say alone."""
        check_aggregate_against_disabled(self.aggregate, self.disabled_events)
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
            where = "http2" if "http2" in kwargs else _BY_NAME["http2"].env[0]
            raise ConfigurationError(
                f"{where}: HTTP/2 needs the h2 package: pip install 'meterstream[http2]'"
            )

    def is_set(self, name: str) -> bool:
        """True when setting *name* was given (a keyword or its environment variable),
        False when it has its default."""
        return name in self._given

    def payload_keys_for(self, event_name: str) -> tuple[str, str]:
        """The (customer key, value key) of *event_name*'s payload."""
        override = self.payload_keys.get(event_name)
        if override is None:
            return self.customer_payload_key, self.value_payload_key
        return (
            override[0] or self.customer_payload_key,
            override[1] or self.value_payload_key,
        )

    def metronome_value_key_for(self, event_name: str) -> str:
        """The Metronome property that carries *event_name*'s value."""
        key = self.metronome_value_keys.get(event_name)
        return key if key is not None else self.payload_keys_for(event_name)[1]

    def __repr__(self) -> str:
        parts = []
        for declared in SETTINGS:
            value = getattr(self, declared.name)
            if declared.redact is not None and value is not None:
                value = declared.redact(value)
            parts.append(f"{declared.name}={value!r}")
        return f"Settings({', '.join(parts)})"


def _declarations() -> tuple[Setting, ...]:
    found = []
    for field in dataclasses.fields(Settings):
        declared = field.metadata.get(DECLARED)
        if declared is not None:
            env = ("METERSTREAM_" + field.name.upper(), *declared.env)
            found.append(dataclasses.replace(declared, name=field.name, env=env))
    return tuple(found)


#: Every setting, in the order of the configuration reference.
SETTINGS: tuple[Setting, ...] = _declarations()
SETTING_NAMES: tuple[str, ...] = tuple(declared.name for declared in SETTINGS)
_BY_NAME: dict[str, Setting] = {declared.name: declared for declared in SETTINGS}


def destinations_given(kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``destinations`` setting alone, from *kwargs* or the environment:
    what decides, before anything else is resolved, whether a client is a
    parallel run.

    Raises:
        ConfigurationError: a value that does not parse.
    """
    value: tuple[str, ...] = read_setting(_BY_NAME["destinations"], kwargs, os.environ, set())
    return value
