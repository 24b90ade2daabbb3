"""The keywords of ``configure()`` and ``MeterClient()``, one per setting.

Generated from the declarations in ``_config/settings.py`` by
``python -m meterstream._config.typed``; do not edit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, Optional, TypedDict, Union

from meterstream._config.parsing import DeliveryErrorCallback

__all__ = ["SettingKeywords"]


class SettingKeywords(TypedDict, total=False):
    """Every setting of the configuration reference, as a keyword; None: not given."""

    enabled: Optional[bool]
    """`false`: decorators call straight through; nothing is recorded, no thread starts, no
    connection is opened
    """
    api_key: Optional[str]
    """Secret key used to open meter event sessions; never logged, never in a `repr`. A key
    with anything but printable ASCII (a space, an accented letter, a zero-width character
    from a copy-paste) is refused at `configure()`, without showing it
    """
    exporter: Any
    """`stripe`, `log` (one JSON line per event on the `meterstream` logger at INFO), `memory`
    (tests: `client.exporter.events`), `none`, `nats` (fleet mode: [fleet](fleet.md)), or an
    `Exporter` instance; see [what `stats()` counts](#what-stats-counts)
    """
    api_base: Optional[str]
    """Where sessions are opened. An `http://` or `https://` URL with a host, an optional port
    1..65535 and an optional path prefix; no query or fragment
    """
    stream_base: Optional[str]
    """Where events are sent; same rules as `api_base`"""
    stripe_version: Optional[str]
    """The `Stripe-Version` header (stripe-python 16.1's pinned version)"""
    batch_size: Optional[int]
    """Events per request, 1..100"""
    flush_interval: Optional[float]
    """Seconds; the longest an event waits in the buffer"""
    max_queue_size: Optional[int]
    """Events the buffer holds; past it, `overflow` applies"""
    overflow: Optional[str]
    """`drop_newest`, `drop_oldest`, or `block` (the caller waits up to `block_timeout`, then
    the event is dropped)
    """
    block_timeout: Optional[float]
    """Seconds `overflow=block` may hold a caller"""
    on_missing_customer: Optional[str]
    """`warn` (drop, count, log), `drop` (drop, count), `raise` (`MissingCustomerError`,
    whatever `raise_errors` says)
    """
    raise_errors: Optional[bool]
    """`true`: invalid input raises `InvalidEventError` in the caller, naming the field;
    `false`: it is dropped, counted and logged, and the metered call is unaffected, whatever
    the input (hostile objects included). Constants given to `@meter` fail at decoration
    time either way
    """
    spool_path: Optional[str]
    """A spool between `record()` and delivery (a journal beside a SQLite file): events survive
    crashes, restarts and outages; several processes may share it
    ([durability](durability.md)). `auto`: a per-user state directory named after the
    application (memory, with one WARNING, when it cannot be written). One that cannot be
    opened is a `ConfigurationError` naming `spool_path`
    """
    spool_sync: Optional[str]
    """`normal`: an event is safe from a process crash once `record()` returns; `full`: also
    from power loss (an fdatasync shared by the threads recording at once)
    """
    spool_max_bytes: Optional[int]
    """Bytes of data the spool may hold (at least 1 MiB); past it, `overflow` applies and drops
    are counted (`dropped_spool_full`)
    """
    spool_history_days: Optional[float]
    """Days the events Stripe accepted are kept in the spool, for `meterstream reconcile` and
    Stripe's late error reports; 0 keeps none
    """
    spool_sync_interval: Optional[float]
    """Seconds; with `spool_sync="normal"`, the journal is written to the disk this often in
    the background: a power loss loses at most this much; 0: left to the kernel
    """
    spool_app: Optional[str]
    """The application's name under `spool_path="auto"` (default: the program's, from `python
    -m` or `sys.argv[0]`)
    """
    disabled_events: Optional[Union[str, Iterable[str]]]
    """Event names recorded as no-ops (a list, or comma-separated in the environment)"""
    max_retry_time: Optional[float]
    """Seconds a batch may spend retrying before it is a delivery failure"""
    retry_initial_delay: Optional[float]
    """Seconds; the base of the backoff: an isolated failure is retried within an eighth of it;
    while the server fails broadly, waits start from it and double per failed request, with
    full jitter ([delivery](delivery.md#retries-and-pace))
    """
    retry_max_delay: Optional[float]
    """Seconds; the largest backoff ceiling of a batch; probes during an outage are spaced by
    at most 2 s (or this, when shorter), so delivery resumes soon after it ends
    """
    shutdown_timeout: Optional[float]
    """Seconds `shutdown()` and exit wait for the buffer to drain"""
    request_timeout: Optional[float]
    """Seconds for one HTTP request (connecting: at most 5)"""
    max_concurrent_requests: Optional[int]
    """Batches the Stripe exporter may have in flight at once (1..64): one delivery thread each"""
    http2: Optional[bool]
    """HTTP/2 to Stripe; needs `pip install 'meterstream[http2]'`, and `configure()` says so
    when it is missing (with the `stripe` exporter)
    """
    proxy: Optional[str]
    """An `http://` or `https://` proxy URL, optionally `http://user:password@host:port`, for
    every request to Stripe; when set it wins over the environment (`NO_PROXY` included).
    The password never appears in a `repr` or a log
    ([delivery](delivery.md#proxies-and-ca-certificates))
    """
    ca_bundle: Optional[str]
    """A PEM file or a directory of CA certificates to verify Stripe (and an `https://` proxy)
    with; a path that does not exist, or a file that holds no certificate, is a
    `ConfigurationError` naming `ca_bundle`
    """
    on_delivery_error: Optional[Union[str, DeliveryErrorCallback]]
    """Callable `(events, error)` for events Stripe refused or that ran out of retries or time;
    in the environment, a dotted path `package.module:function` (or
    `package.module.function`); a relative path (`.handlers:cb`) is refused: there is no
    package to start from
    """
    on_validation_error: Optional[Union[str, Callable[[Any], None]]]
    """Callable `(report)` for Stripe's asynchronous error reports, a
    `meterstream.ValidationReport`; an exception in it is logged, never raised; in the
    environment, a dotted path (see [reconciliation](reconciliation.md))
    """
    webhook_secret: Optional[str]
    """The `whsec_...` secret that verifies Stripe's webhook signatures (`handle_webhook` and
    the framework endpoints); never in a `repr`
    """
    aggregate: Optional[Union[str, Mapping[str, str]]]
    """`{event_name: "sum"}` (or `name=sum,...` in the environment): aggregate the uses of one
    customer, event name and dimensions within `aggregation_window` into one event whose
    value is their exact sum. Sum meters only: a name whose Stripe meter counts or takes the
    last value is sent one event per use, with a WARNING ([aggregation](aggregation.md))
    """
    aggregation_window: Optional[int]
    """Seconds of one aggregation window, aligned to the wall clock: 1, 2, 3, 4, 5, 6, 10, 12,
    15, 20, 30 or 60 (so no window straddles a minute)
    """
    sync_mode: Optional[bool]
    """Send before `record()` returns, on the caller's thread (serverless, sandboxes without
    threads)
    """
    customer_payload_key: Optional[str]
    """Payload key of the customer"""
    value_payload_key: Optional[str]
    """Payload key of the value"""
    payload_keys: Optional[Union[str, Mapping[str, Mapping[str, str]]]]
    """Per event name: `{"api_calls": {"customer": "account", "value": "count"}}`, as Stripe
    meters' `customer_mapping` / `value_settings` allow (JSON in the environment)
    """
    otel_span_events: Optional[Union[bool, str]]
    """A `meterstream.record` event on the current span per record (auto: while an
    OpenTelemetry SDK is installed)
    """
    otel_record_customer: Optional[bool]
    """The customer id on those span events"""
    otel_baggage_key: Optional[str]
    """OpenTelemetry baggage key under which this client's `customer()` writes the customer and
    its lookups read it; empty: off. Written while an SDK is installed, or always when this
    setting is given ([observability](observability.md))
    """
    nats_url: Optional[str]
    """`exporter="nats"`: NATS server URL(s), comma-separated (`nats://h1:4222,nats://h2:4222`;
    `tls://`, `ws://`, `wss://` too; `nats://user:password@host` for user/password auth).
    Checked at start: a malformed URL, or one where no server answers, is a
    `ConfigurationError` naming `nats_url` ([fleet](fleet.md)); its secrets never in a
    `repr`
    """
    nats_stream: Optional[str]
    """The JetStream stream, created if missing (subjects `<stream>.events.>` and
    `<stream>.dead`, 2-minute duplicate window, 7 days, discard new when full)
    """
    nats_credentials: Optional[str]
    """A NATS `.creds` file (JWT + NKey); a missing file, or a server that refuses the
    connection for want of credentials, is a `ConfigurationError` naming `nats_credentials`
    """
    nats_tls_ca: Optional[str]
    """PEM file of the CA that verifies the NATS server"""
    nats_tls_cert: Optional[str]
    """PEM client certificate for mutual TLS to NATS"""
    nats_tls_key: Optional[str]
    """PEM key of `nats_tls_cert`"""
    nats_replicas: Optional[int]
    """Replicas of the stream when meterstream creates it (3 on a three-node cluster)"""
    metronome_api_key: Optional[str]
    """`exporter="metronome"`: the bearer token of Metronome's API; never logged, never in a
    `repr`. Without one the Metronome exporter is a dry run (the `log` exporter)
    """
    metronome_base: Optional[str]
    """Where usage events go (`/v1/ingest`); same rules as `api_base`"""
    metronome_value_keys: Optional[Union[str, Mapping[str, str]]]
    """Per event name, the Metronome property carrying the value (`{"llm_tokens": "tokens"}`,
    JSON in the environment); default: the event's Stripe value key (`value`)
    """
    destinations: Optional[Union[str, Sequence[str]]]
    """A parallel run: every use goes to each destination named (`["stripe", "metronome"]`),
    each with its own buffer or spool, delivery, retries, dead letters and counts
    ([metronome](metronome.md#parallel-run)); one name is the same as `exporter`
    """
    check_event_names: Optional[bool]
    """When the exporter can read the meters (Stripe's can): before the first events of each
    event name go, check that an active meter has that name, and log a WARNING once for a
    name that has none (Stripe would bill none of its events; `events_without_meter` in
    `stats()` counts them). The meters are read once, and again at most once a minute for a
    name they lack
    """
