"""``MeterClient``: the recording surface wired to a buffer, a flusher and an exporter."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union

from meterstream import _otel
from meterstream._aggregate.meters import MetersSource
from meterstream._client import live as _live_clients
from meterstream._client.aggregation import Aggregation
from meterstream._client.cancel import Cancellations
from meterstream._client.constant import compile_record_constant
from meterstream._client.exporters import accepted_key, make_exporter
from meterstream._client.meter_names import MeterNames
from meterstream._client.record_path import RecordPath, UseSink
from meterstream._client.stats import client_stats
from meterstream._config.settings import Settings, destinations_given
from meterstream._delivery.buffer import Buffer
from meterstream._delivery.counters import Counters
from meterstream._delivery.delivery import Delivery
from meterstream._delivery.event_queue import EventQueue
from meterstream._exporters import Exporter
from meterstream._internal import RateLimitedLog, logger, report_internal_error
from meterstream._record import baggage as _baggage
from meterstream._record import checks as _checks
from meterstream._record import events as _events
from meterstream._record.baggage import Baggage
from meterstream._record.context import (
    CUSTOMER,
    bind_context,
    customer,
    customer_for,
    customer_seen_by,
)
from meterstream._record.decorators import make_meter
from meterstream._record.metering import metering
from meterstream._spool import location as spool_location
from meterstream._spool.sink import SpoolBuffer
from meterstream._spool.spool import Spool
from meterstream._truth.reports import ErrorReports
from meterstream._truth.webhooks import DEFAULT_TOLERANCE, ValidationReport
from meterstream._truth.webhooks import handle_webhook as _handle_webhook

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from meterstream._config.keywords import SettingKeywords
from meterstream.errors import (
    InvalidEventError,
    MeterError,
    MissingCustomerError,
    short_repr,
)

__all__ = ["MeterClient"]

_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")

_time = time.time
MAX_FAST_INT = _checks.MAX_FAST_INT
_MIN_FAST_INT = -MAX_FAST_INT
#: Floats record_use takes as they are (finite, written in 40 characters).
_FLOAT_FITS_LOW = _checks.FLOAT_FITS_LOW
_FLOAT_FITS_HIGH = _checks.FLOAT_FITS_HIGH
_getpid = os.getpid
_get_customer = CUSTOMER.get
_check_event_name = _checks.check_event_name
_check_value = _checks.check_value
_check_customer = _checks.check_customer
_known_customers = _checks.known_customers
_known_names = _checks.known_names
_next_sequence = _events.next_sequence


class MeterClient:
    """A configured metering pipeline: record uses, buffer them, deliver them.

    Most applications use the module functions (``meterstream.meter`` ...),
    which share one default client; make a ``MeterClient`` when you need two
    configurations in one process. The current customer (``customer()``) is
    shared by every client.

    Args:
        **settings: any setting of the configuration reference
            (``docs/configuration.md``); each also reads ``METERSTREAM_<NAME>``
            from the environment, and keywords win.

    Raises:
        ConfigurationError: an unknown setting or a bad value.
    """

    #: The class of a parallel run (``destinations`` names two or more): set
    #: by :mod:`meterstream._client.parallel`, which the package imports.
    parallel_class: Optional[type[MeterClient]] = None

    def __new__(cls, **settings: Any) -> MeterClient:
        parallel = MeterClient.parallel_class
        if cls is MeterClient and parallel is not None and len(destinations_given(settings)) > 1:
            cls = parallel  # a parallel run: one client per destination
        return object.__new__(cls)

    def __init__(self, **settings: Unpack[SettingKeywords]) -> None:
        self._settings = Settings.resolve(settings)
        s = self._settings
        #: Where this client delivers, for OpenTelemetry's ``meterstream.destination``.
        self.destination: str = s.exporter if isinstance(s.exporter, str) else "custom"
        #: The durable spool (``spool_path``), or None: events in memory only.
        self.spool: Optional[Spool] = None
        #: Stripe's asynchronous error reports, counted by code.
        self._reports = ErrorReports()
        #: False when ``enabled=False``: decorators call straight through.
        self.active = s.enabled
        self._disabled = s.disabled_events
        self._raise = s.raise_errors
        self._on_missing = s.on_missing_customer
        self._log = RateLimitedLog()
        self._lock = threading.Lock()
        #: Every count stats() reports: the buffer and delivery add to it too.
        self._counters = Counters()
        self._buffer = self._new_sink(s)
        self.exporter: Exporter = make_exporter(s)
        #: The stats() key of what the exporter accepted: "sent" is Stripe's
        #: (or the user's own exporter's) word; the local exporters count
        #: under their own name, so a missing key never looks like billing.
        self._accepted_key = accepted_key(self.exporter)
        #: Stripe's meters, when the exporter can read them: names without one
        #: are warned about before their events go; aggregation reads them too.
        self._meter_names: Optional[MeterNames] = None
        if s.enabled and s.check_event_names and isinstance(self.exporter, MetersSource):
            self._meter_names = MeterNames(self.exporter)
        #: Aggregation of sum meters (``aggregate``; with a spool, always).
        self._aggregation = Aggregation(
            s, self._buffer, self._meter_names or self.exporter, self._buffer.put
        )
        #: Its aggregator, or None: read on the record path, so kept at hand.
        self._aggregator = self._aggregation.aggregator
        self._delivery = delivery = Delivery(self._buffer, self.exporter, s, self._log)
        if self._meter_names is not None:
            delivery.before_send = self._meter_names.before_send
        #: cancel(): withdrawn, queued to its own sender, or refused.
        self._cancels = Cancellations(s, self.exporter, delivery, self.spool, self._log)
        self._sync = s.sync_mode
        # OpenTelemetry: span events on records (auto: while an SDK is active),
        # the baggage key customer() writes, and the library's metrics.
        self._otel_auto = s.otel_span_events is None
        self._span_customer = s.otel_record_customer
        #: Which way records go, and every fact that decides it: the one
        #: owner of that state; the rest of the client asks it or updates it.
        self._path = RecordPath(
            aggregator=self._aggregator,
            spool=self.spool is not None,
            always_slow=bool(self._disabled) or self._sync,
            span_events=bool(s.otel_span_events),
            # No exporter chosen and no key: the log exporter stands in. Said
            # once, at WARNING, at the first record.
            warn_no_key=(
                s.enabled
                and s.exporter == "log"
                and not s.api_key
                and settings.get("exporter") is None
                and "METERSTREAM_EXPORTER" not in os.environ
            ),
            started=lambda: delivery.started,
        )
        #: The record path's one sink: everything accepted goes through it.
        self._put = self._buffer.put
        if isinstance(self._buffer, Buffer):
            self.record_constant = compile_record_constant(
                self._buffer,
                path=self._path,
                general=self._record_constant_general,
                clock=_time,
                queue_full=self._log_queue_full,
            )
        else:  # a spool's put is a durable insert: always the checked path
            self.record_constant = self._record_constant_general
        self.name = _live_clients.new_client_name()
        #: This client's baggage key: what its customer() writes and its lookups read.
        self._baggage = Baggage(s.otel_baggage_key, explicit=s.is_set("otel_baggage_key"))
        if self.active:
            self._delivery.on_tick = self._on_tick
            self._delivery.on_start = self._path.update
            _otel.install_metrics(_live_clients.live_clients)
            self.refresh_otel()
            if self.spool is not None and (self._buffer.pending() or self._aggregation.pending()):
                # What a previous process left: delivered without waiting for a record.
                self._delivery.ensure_started()
            _live_clients.register(self)

    def _new_sink(self, s: Settings) -> EventQueue:
        """Where accepted events go: the spool when ``spool_path`` is set, else memory."""
        path = spool_location.chosen(s.spool_path, s.spool_app) if s.enabled else None
        if not path:
            return Buffer(
                s.max_queue_size, s.overflow, s.block_timeout, s.batch_size, self._counters
            )
        self.spool = Spool(
            path,
            sync=s.spool_sync,
            max_bytes=s.spool_max_bytes,
            history=s.spool_history_days * 86400.0,
            sync_interval=s.spool_sync_interval,
        )
        return SpoolBuffer(
            self.spool,
            s.overflow,
            s.block_timeout,
            s.batch_size,
            self._counters,
            log=self._log,
            raise_errors=s.raise_errors,
        )

    # -- configuration ---------------------------------------------------------

    def _on_tick(self) -> None:
        """Each delivery wake: OpenTelemetry's mode, and the aggregation windows that ended."""
        self.refresh_otel()
        self._aggregation.on_tick()

    def _watch_uses(self, sink: Optional[UseSink]) -> None:
        """Hand each use accepted from now on to *sink* (None: stop); for
        :class:`meterstream.testing.MeterEvents`, which shows uses beside
        the events they became."""
        self._path.update(use_sink=sink)

    def refresh_otel(self) -> None:
        """Re-decide what auto mode means now (an SDK may be installed after us)."""
        active = _otel.sdk_active()
        if self.active and not self._path.closed:
            self._baggage.refresh(active)
            _baggage.refresh_before_default_client(active)
        if self._otel_auto:
            self._path.update(span_events=active)

    @property
    def settings(self) -> Settings:
        """The resolved settings (read-only)."""
        return self._settings

    @property
    def enabled(self) -> bool:
        """False when the client was made with ``enabled=False``: nothing is recorded."""
        return self.active

    def __repr__(self) -> str:
        s = self._settings
        exporter = s.exporter if isinstance(s.exporter, str) else type(s.exporter).__name__
        return f"<MeterClient enabled={s.enabled} exporter={exporter!r} queued={len(self._buffer)}>"

    # -- recording ---------------------------------------------------------------

    def meter(
        self,
        event_name: str,
        *,
        value: Any = 1,
        customer: Any = None,
        identifier: Any = None,
        dimensions: Optional[Mapping[str, str]] = None,
        on_error: str = "skip",
    ) -> Callable[[_F], _F]:
        """Decorate a function so that each successful call records one use.

        Works on functions, methods, classmethods, staticmethods, ``async def``
        functions, generators and async generators (recorded when exhausted or
        closed); keeps the signature, name, docstring and coroutine-ness.

        Args:
            event_name: the Stripe meter's event name (1..100 characters).
            value: a number (int, float, Decimal, numeric string), or a callable
                taking a :class:`Call` and returning one. Default 1.
            customer: a customer id, or a callable of the :class:`Call`; default
                the current customer (:func:`meterstream.customer`).
            identifier: a unique id for the event, or a callable of the
                :class:`Call` (for deterministic ids such as a request id);
                generated when not given.
            dimensions: constant meter dimensions, str to str.
            on_error: ``"skip"`` (a call that raises records nothing) or
                ``"record"`` (it is recorded, with ``call.exception`` set).

        Returns:
            The decorator, recording through this client; the decorated
            function keeps its name, docstring, signature and
            ``inspect.iscoroutinefunction()``.

        Raises:
            InvalidEventError: at decoration time, for a constant that Stripe would refuse.
        """
        return make_meter(
            self._self,
            event_name,
            value=value,
            customer=customer,
            identifier=identifier,
            dimensions=dimensions,
            on_error=on_error,
        )

    def metering(
        self,
        event_name: str,
        *,
        customer: Optional[str] = None,
        identifier: Optional[str] = None,
        dimensions: Optional[Mapping[str, str]] = None,
        on_error: str = "skip",
    ) -> metering:
        """Meter a block: ``with client.metering("gpu_seconds") as usage: usage.value = 12.5``.

        Works with ``with`` and ``async with``; the use is recorded through this
        client when the block exits. The arguments are checked now, but a bad
        one is refused only when the block is entered (raised there with
        ``raise_errors=True``, else counted and logged), and the block runs
        all the same.

        Args:
            event_name: the Stripe meter's event name (1..100 characters).
            customer: a customer id; default the customer current when the
                block is entered (:func:`meterstream.customer`).
            identifier: a unique id for the event; generated when not given.
            dimensions: constant meter dimensions, str to str.
            on_error: ``"skip"`` (a block that raises records nothing) or
                ``"record"`` (it is recorded all the same).

        Returns:
            A context manager, reusable and safe to enter from several threads
            and tasks at once, that yields a fresh :class:`Usage` per entry:
            set ``usage.value`` or call ``usage.add()``; left unset, the
            value is 1.
        """
        return metering(
            self._self,
            event_name,
            customer=customer,
            identifier=identifier,
            dimensions=dimensions,
            on_error=on_error,
        )

    def record(
        self,
        event_name: str,
        value: Any = 1,
        *,
        customer: Optional[str] = None,
        identifier: Optional[str] = None,
        dimensions: Optional[Mapping[str, str]] = None,
        timestamp: Any = None,
    ) -> Optional[str]:
        """Record one use now.

        Args:
            event_name: the meter's event name.
            value: int, float, Decimal or numeric string; default 1.
            customer: default the current customer.
            identifier: default a generated unique id.
            dimensions: meter dimensions, str to str.
            timestamp: when the use happened: an aware ``datetime`` or Unix
                seconds, within the past 35 days and 5 minutes ahead; default now.

        Returns:
            The identifier of the event recorded (keep it to :meth:`cancel`
            it), or None when nothing was recorded: disabled, dropped,
            invalid, or a use that was aggregated (it has no event of its own).

        Raises:
            InvalidEventError: bad input, when ``raise_errors=True``.
            MissingCustomerError: no customer and ``on_missing_customer="raise"``.
        """
        if not self.active:
            return None
        path = self._path
        aggregator = path.aggregate_now
        if (
            aggregator is not None
            and path.canary[0]
            and identifier is None
            and timestamp is None
            and dimensions is None
            and (
                (type(value) is int and _MIN_FAST_INT <= value <= MAX_FAST_INT)
                or (type(value) is float and _FLOAT_FITS_LOW <= value < _FLOAT_FITS_HIGH)
            )
            and type(customer) is str
            and customer in _known_customers
            and aggregator.add(event_name, customer, value)
        ):
            return None  # a plain use of a sum meter, checked as record_use would, aggregated
        if dimensions is None and type(event_name) is str and event_name in _known_names:
            name = event_name  # checked before: the common case, without a call
            dims = None
        else:
            try:
                name = _check_event_name(event_name)
                dims = None if dimensions is None else _checks.check_dimensions(dimensions)
            except InvalidEventError as exc:
                self.invalid(exc, event_name)
                return None
        if customer is None:  # "" is a customer id, refused as one: never "no customer"
            customer = _get_customer()
        ident = self.record_use(name, value, customer, identifier, dims, timestamp)
        if ident is None or type(ident) is str:
            return ident
        return _events.identifier_prefix() + str(ident)

    def cancel(self, identifier: str, event_name: str) -> Optional[str]:
        """Take back a recorded use (see docs/corrections.md).

        An event not yet sent is removed before it leaves; one on its way or
        accepted is cancelled at Stripe (a meter event adjustment, sent
        after the event, retried like a batch; durable with a spool).

        Args:
            identifier: the event's identifier (what :meth:`record` returned).
            event_name: the event's name.

        Returns:
            ``"withdrawn"`` (removed before it was sent: no request),
            ``"queued"`` (to be cancelled at Stripe), or None when refused
            and ``raise_errors`` is off.

        Raises:
            CancelError: with ``raise_errors=True``, a cancellation that cannot
                be done: an identifier the spool never held, an event Stripe
                accepted over 24 hours ago, an aggregated event name, or a
                destination that cannot cancel.
        """
        if not self.active:
            return None
        if not self._path.canary[0]:
            self._check_fork()
        return self._cancels.cancel(identifier, event_name)

    def _self(self) -> MeterClient:
        return self

    # -- the current customer (one context, shared by every client) ---------------

    def customer(self, customer_id: Optional[str]) -> customer:
        """Set the current customer for a ``with`` / ``async with`` block.

        The same context as :func:`meterstream.customer`: every client, the
        default one included, sees the customer set here. When OpenTelemetry
        baggage is on, the block writes the customer under this client's
        ``otel_baggage_key``.

        Args:
            customer_id: the Stripe customer id (``"cus_..."``), or None to
                clear the current customer inside the block.

        Returns:
            The :class:`meterstream.customer` block to enter. Entering it never
            raises: an id Stripe cannot bill makes each use recorded inside
            it an invalid event, naming the ``customer`` field.
        """
        return customer_for(customer_id, self._baggage)

    def current_customer(self) -> Optional[str]:
        """The current customer, as :func:`meterstream.current_customer` sees it.

        Returns:
            The customer of the innermost enclosing :meth:`customer` block;
            outside any block, the one in OpenTelemetry baggage under this
            client's ``otel_baggage_key``; else None.
        """
        return customer_seen_by(self._baggage)

    def bind_context(self, fn: Callable[..., _T]) -> Callable[..., _T]:
        """Bind *fn* to a copy of the current context; see :func:`meterstream.bind_context`.

        Use it to carry the current customer into a thread pool, whose workers
        run in their own context.

        Args:
            fn: any callable.

        Returns:
            A callable that runs *fn* in a copy of the context captured now (a
            fresh copy per call, so it may run in several threads at once).
        """
        return bind_context(fn)

    # -- the Recorder contract (what the decorators call) ---------------------------

    #: The hot path of ``@meter`` with a constant value, checked at decoration
    #: time: ``record_constant(event_name, value, customer, dimensions)``. Part
    #: of the contract the decorators use (:class:`Recorder`); an application
    #: calls :meth:`record`. Compiled per client with the buffer's append
    #: inlined (see :mod:`meterstream._client.constant`); with a spool, the
    #: checked path.
    record_constant: Callable[[str, Any, Optional[str], Optional[dict[str, str]]], Any]

    def _record_constant_general(
        self,
        event_name: str,
        value: Any,
        customer: Optional[str],
        dimensions: Optional[dict[str, str]],
    ) -> None:
        """record_constant off its fast path (:class:`RecordPath` says when),
        or always with a spool: the checked path, with the same arguments."""
        self.record_use(event_name, value, customer, None, dimensions, None)

    def _span_event(self, event_name: str, value: Any, ident: Any, customer: str) -> None:
        _otel.record_event(
            event_name,
            value,
            ident if type(ident) is str else _events.identifier_prefix() + str(ident),
            customer if self._span_customer else None,
        )

    def _log_queue_full(self) -> None:
        self._log.log(
            logging.WARNING,
            "drop:queue_full",
            "the buffer is full (max_queue_size=%d): events are being dropped",
            self._settings.max_queue_size,
        )

    # The general hot path: everything a decorated call does after the function
    # returned. Checks, a clock read and one put into the sink: no I/O, no locks,
    # no formatting (the flusher encodes), no logging per event.
    def record_use(
        self,
        event_name: str,
        value: Any,
        customer: Optional[str],
        identifier: Optional[str],
        dimensions: Optional[dict[str, str]],
        timestamp: Any,
    ) -> Any:
        """Check and record one use (event name and dimensions already checked).

        Part of the contract the decorators use (:class:`Recorder`); an
        application calls :meth:`record`. Does nothing for a name in
        ``disabled_events``; an event recorded after :meth:`shutdown`, or one
        the full buffer cannot take, is dropped and counted.

        Args:
            event_name: the meter's event name, already checked.
            value: int, float, Decimal or numeric string.
            customer: the customer id; None or empty for the one in
                OpenTelemetry baggage, else the missing-customer policy
                (``on_missing_customer``) applies.
            identifier: the event's unique id; None for a generated one.
            dimensions: meter dimensions, already checked, or None.
            timestamp: when the use happened (an aware ``datetime`` or Unix
                seconds); None for now.

        Returns:
            The event's identifier as recorded (the string given, or the
            number of a generated one, which the wire prefixes), or None when
            nothing was recorded of its own (dropped, invalid, aggregated).

        Raises:
            InvalidEventError: bad input, when ``raise_errors=True`` (else it
                is counted as ``dropped_invalid`` and logged).
            MissingCustomerError: no customer and
                ``on_missing_customer="raise"``, whatever ``raise_errors`` says.
        """
        if self._disabled and event_name in self._disabled:
            return None
        path = self._path
        if not path.canary[0]:
            self._check_fork()
        try:
            if type(value) is not int or not _MIN_FAST_INT <= value <= MAX_FAST_INT:
                value = _check_value(value)
            if type(customer) is not str or customer not in _known_customers:
                if type(customer) is not str:
                    if customer is None:
                        customer = self._baggage.customer()
                        if customer is None:
                            self._missing_customer(event_name)
                            return None
                    else:  # an InvalidCustomer, a str subclass, or not a string at all
                        customer = _check_customer(customer)
                _check_customer(customer)  # "" too: invalid, named, not "no customer"
            # The identifier and timestamp given are checked here; the ones
            # generated are made only for a use that is not aggregated.
            ident: Any = None if identifier is None else _checks.check_identifier(identifier)
            ts: Any = None if timestamp is None else _checks.check_timestamp(timestamp)
            if dimensions is not None:
                keys = self._settings.payload_keys_for(event_name)
                if keys[0] in dimensions or keys[1] in dimensions:
                    _checks.check_dimensions(dimensions, keys)
        except InvalidEventError as exc:
            if type(exc) is MissingCustomerError:
                raise  # on_missing_customer="raise": whatever raise_errors says
            self.invalid(exc, event_name)
            return None
        except Exception as exc:  # a check that let something through: our bug
            report_internal_error(exc)
            self.invalid(
                InvalidEventError("event", None, f"could not be checked ({type(exc).__name__})"),
                event_name,
            )
            return None
        if path.closed:
            self._drop("shutdown", 1, "an event was recorded after shutdown(); it was dropped")
            return None
        aggregator = self._aggregator
        if (
            aggregator is not None
            and ident is None
            and ts is None
            and aggregator.add(event_name, customer, value, dimensions)
        ):
            if path.use_sink is not None or path.span_events:
                self._watch_aggregated(event_name, customer, value, dimensions)
            if not self._delivery.started:
                self._delivery.ensure_started()
            return None
        if ident is None:
            ident = _next_sequence()
        if ts is None:
            ts = _time()
        if not self._put((event_name, customer, value, ts, ident, dimensions)):
            if self.spool is None:  # a spool counts and logs its own drops
                self._log_queue_full()
            return None
        use_sink = path.use_sink
        if use_sink is not None:
            use_sink(event_name, customer, value, ts, dimensions, identifier)
        if path.span_events:
            self._span_event(event_name, value, ident, customer)
        if path.warn_no_key:
            self._say_no_key()
        if self._sync:
            self._delivery.flush_on_caller()
            return ident
        if not self._delivery.started:
            self._delivery.ensure_started()
        return ident

    def record_uses(
        self,
        uses: Sequence[tuple[str, Any, Optional[dict[str, str]]]],
        customer: Optional[str],
        on_error: Optional[Callable[[MeterError], object]] = None,
    ) -> None:
        """Record several uses of one customer at one moment, as :meth:`record_use` each.

        The token meter's path (one response, one event per token type): the
        customer, the fork and shutdown checks and the clock are read once;
        each use keeps its own checks, its own identifier and its own place
        in the buffer (or the aggregator). Anything :meth:`record_use`
        decides on its own (a customer not seen yet, a value that is not a
        plain int, ``disabled_events``, a fork, shutdown) sends that use, or
        all of them, to :meth:`record_use` itself.

        Args:
            uses: ``(event_name, value, dimensions)`` of each use, the event
                names and dimensions already checked.
            customer: as :meth:`record_use`'s.
            on_error: called with each :class:`MeterError` a use raises
                (``raise_errors``, ``on_missing_customer="raise"``), and the
                next use recorded; None raises the first.
        """
        path = self._path
        if (
            self._disabled
            or not path.canary[0]
            or path.closed
            or type(customer) is not str
            or customer not in _known_customers
        ):
            for event_name, value, dimensions in uses:
                self._record_one(event_name, value, customer, dimensions, on_error)
            return
        aggregator = self._aggregator
        put = self._put
        use_sink = path.use_sink
        span_events = path.span_events
        payload_keys_for = self._settings.payload_keys_for
        checked_for: Optional[str] = None
        keys: tuple[str, str] = ("", "")
        ts: Optional[float] = None
        sent = aggregated = False
        for event_name, value, dimensions in uses:
            if dimensions is not None and event_name is not checked_for:
                keys = payload_keys_for(event_name)
                checked_for = event_name
            if (
                type(value) is not int
                or not _MIN_FAST_INT <= value <= MAX_FAST_INT
                or (dimensions is not None and (keys[0] in dimensions or keys[1] in dimensions))
            ):
                self._record_one(event_name, value, customer, dimensions, on_error)
                continue
            if aggregator is not None and aggregator.add(event_name, customer, value, dimensions):
                if use_sink is not None or span_events:
                    self._watch_aggregated(event_name, customer, value, dimensions)
                aggregated = True
                continue
            if ts is None:
                ts = _time()
            ident = _next_sequence()
            if not put((event_name, customer, value, ts, ident, dimensions)):
                if self.spool is None:  # a spool counts and logs its own drops
                    self._log_queue_full()
                continue
            sent = True
            if use_sink is not None:
                use_sink(event_name, customer, value, ts, dimensions, None)
            if span_events:
                self._span_event(event_name, value, ident, customer)
        # What record_use does after each use it put (or aggregated), once.
        if sent:
            if path.warn_no_key:
                self._say_no_key()
            if self._sync:
                self._delivery.flush_on_caller()
                return
        if (sent or aggregated) and not self._delivery.started:
            self._delivery.ensure_started()

    def _record_one(
        self,
        event_name: str,
        value: Any,
        customer: Optional[str],
        dimensions: Optional[dict[str, str]],
        on_error: Optional[Callable[[MeterError], object]],
    ) -> None:
        """One use of :meth:`record_uses` on the general path."""
        try:
            self.record_use(event_name, value, customer, None, dimensions, None)
        except MeterError as exc:
            if on_error is None:
                raise
            on_error(exc)

    def _watch_aggregated(
        self, event_name: str, customer: str, value: Any, dimensions: Optional[dict[str, str]]
    ) -> None:
        """An aggregated use, for a test watching uses and for OpenTelemetry's span
        events: the time and identifier a use recorded on its own would have had."""
        use_sink = self._path.use_sink
        if use_sink is not None:
            use_sink(event_name, customer, value, _time(), dimensions, None)
        if self._path.span_events:
            self._span_event(event_name, value, _next_sequence(), customer)

    def _say_no_key(self) -> None:
        """The first record without an API key: say that nothing goes to Stripe."""
        with self._lock:
            if not self._path.warn_no_key:
                return
            self._path.update(warn_no_key=False)
        logger.warning(
            "events are not sent to Stripe: no API key is set (api_key=, "
            "METERSTREAM_API_KEY or STRIPE_API_KEY), so the 'log' exporter writes them "
            "to the meterstream logger at INFO instead; stats() counts them under 'log'"
        )

    # -- bad input and missing customers -----------------------------------------

    def invalid(self, exc: InvalidEventError, event_name: Any) -> None:
        """An event failed validation: raise it, or count and log it (rate-limited).

        Part of the contract the decorators use (:class:`Recorder`).

        Args:
            exc: the validation error, naming the field and value at fault.
            event_name: the event's name as given; it may itself be the bad
                input, so it is only shown, never trusted.

        Raises:
            InvalidEventError: *exc* itself, when ``raise_errors=True``; else
                it is counted as ``dropped_invalid`` and logged.
        """
        if self._raise:
            raise exc
        # The name may be the bad input itself: shown with a repr that cannot fail.
        self._drop("invalid", 1, "invalid meter event %s dropped: %s", short_repr(event_name), exc)

    def customer_at_start(self, event_name: str) -> Optional[str]:
        """No customer in the context when a metered call starts: find one, or fail early.

        Part of the contract the decorators use (:class:`Recorder`): with
        ``on_missing_customer="raise"`` the metered call fails before any of
        its work is done; the other policies apply when the use is recorded.

        Args:
            event_name: the meter's event name (disabled names never raise).

        Returns:
            The customer in OpenTelemetry baggage under this client's key, or
            None when there is none.

        Raises:
            MissingCustomerError: no customer in baggage either, the client is
                enabled, the event name is not disabled and
                ``on_missing_customer="raise"``.
        """
        customer = self._baggage.customer()
        if customer is not None:
            return customer
        if self._on_missing == "raise" and self.active and event_name not in self._disabled:
            raise MissingCustomerError(event_name)
        return None

    def _missing_customer(self, event_name: str) -> None:
        if self._on_missing == "raise":
            raise MissingCustomerError(event_name)
        self._drop(
            "missing_customer",
            1,
            "no customer for meter event %r: dropped (set one with meterstream.customer(...) "
            "or customer=...)",
            event_name,
            level=logging.WARNING if self._on_missing == "warn" else None,
        )

    def _drop(
        self,
        reason: str,
        count: int,
        msg: str,
        *args: Any,
        level: Optional[int] = logging.WARNING,
    ) -> None:
        self._counters.add("dropped_" + reason, count)
        if level is not None:
            self._log.log(level, "drop:" + reason, msg, *args)

    # -- fork ---------------------------------------------------------------------

    def _check_fork(self) -> None:
        """The canary says this process forked: reset, unless the fork hooks
        already did (they arm the canary again)."""
        if self._path.pid != _getpid():
            self._after_fork_in_child()

    def _after_fork_in_child(self) -> None:
        """Make this client usable in a forked child: fresh locks, no inherited events."""
        # First: the parts reset below (the spool's journal) write the child's prefix.
        _events.ensure_fresh_prefix_after_fork()
        self._lock = threading.Lock()
        self._log = RateLimitedLog()
        self._reports.after_fork_in_child()
        self._buffer.reset_after_fork()
        self._counters.reset_after_fork()
        self._delivery.after_fork_in_child()
        self._cancels.after_fork_in_child()
        self.exporter.after_fork_in_child()
        self._aggregation.after_fork_in_child()
        self._path.after_fork_in_child()  # last: the parts it asks about are reset

    # -- lifecycle ------------------------------------------------------------------

    def flush(self, timeout: Optional[float] = 5.0) -> bool:
        """Settle everything recorded so far.

        Settled means delivered, or refused (by Stripe, or out of retries),
        handed to ``on_delivery_error`` and counted: ``flush()`` returning
        True does not mean every event was billed; ``stats()`` says which.
        Open aggregation windows are closed first. With a spool, every event
        recorded before the call must also have left the spool.

        Args:
            timeout: seconds to wait at most; None waits as long as it takes.

        Returns:
            True when every event recorded before the call is settled;
            False when *timeout* ran out first, for example while Stripe is
            unreachable.
        """
        if not self.active:
            return True
        if not self._path.canary[0]:
            self._check_fork()
        try:
            self._aggregation.close_windows(force=True)
            started = time.monotonic()
            done = self._delivery.flush(timeout)
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
            return self._cancels.sender.flush(left) and done
        except MeterError:
            raise
        except Exception as exc:  # never let a bug in delivery break the caller
            report_internal_error(exc)
            self._log.log(logging.ERROR, "flush", "flush failed: %r", exc)
            return False

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Stop accepting events, deliver what waits, and release resources.

        Idempotent. Events recorded afterwards are dropped and counted.

        Args:
            timeout: seconds to wait for delivery; default ``shutdown_timeout``.

        Returns:
            True when everything was delivered (or settled) in time.
        """
        if timeout is None:
            timeout = self._settings.shutdown_timeout
        with self._lock:
            if self._path.closed:
                return True
            self._path.update(closed=True)
        if not self.active:
            return True
        try:
            # Put what the open windows hold (the buffer no longer takes records).
            self._aggregation.close_windows(force=True)
            # Cancellations first, while the delivery threads still send the
            # events they wait for; then the events.
            started = time.monotonic()
            cancelled = self._cancels.sender.shutdown(timeout)
            left = max(0.0, timeout - (time.monotonic() - started))
            done = self._delivery.shutdown(left) and cancelled
        except Exception as exc:
            report_internal_error(exc)
            self._log.log(logging.ERROR, "shutdown", "shutdown failed: %r", exc)
            done = False
        if self.spool is not None:
            try:
                self.spool.close()
            except Exception as exc:
                report_internal_error(exc)
        _live_clients.unregister(self)
        return done

    def stats(self) -> dict[str, Any]:
        """Counters about this client.

        Returns:
            ``recorded`` (accepted into the buffer), ``queued`` (accepted, not yet
            settled), ``sent`` (accepted by Stripe, or by your own
            :class:`Exporter`), ``log`` / ``memory`` / ``none`` (handled by that
            local exporter instead: never billed), ``retried`` (batch attempts repeated),
            ``failed`` (refused by Stripe or out of retries) with
            ``failed_rejected`` / ``failed_retries_exhausted``, ``dropped``
            (never queued, or discarded) with ``dropped_queue_full``,
            ``dropped_shutdown``, ``dropped_invalid``, ``dropped_missing_customer``,
            ``sessions_opened``, ``requests``, and ``rejected_by_stripe`` (with
            ``rejected_by_stripe_<code>``): events Stripe accepted, then
            reported invalid (see ``handle_webhook``). With ``destinations``,
            also ``destinations``: each destination's own counts, by name,
            the other keys being their sums.
            And the cancellations
            (:meth:`cancel`): ``cancels_withdrawn`` (removed before sending),
            ``cancels_sent`` (cancelled at Stripe), ``cancels_pending``,
            ``cancels_failed`` (refused by Stripe, or out of retries) and
            ``cancels_refused`` (refused at the call). And
            ``events_without_meter``: events sent under an event name that no
            active meter had when it was checked (Stripe bills none of them;
            checked when the exporter can read the meters, as Stripe's does).
        """
        out = client_stats(
            counters=self._counters,
            delivery=self._delivery,
            buffer=self._buffer,
            spool=self.spool,
            aggregator=self._aggregator,
            aggregating=bool(self._settings.aggregate),
            reports=self._reports,
            accepted_key=self._accepted_key,
        )
        out.update(self._cancels.counters())
        meter_names = self._meter_names
        out["events_without_meter"] = 0 if meter_names is None else meter_names.events_without_meter
        return out

    # -- Stripe's asynchronous error reports (see _webhooks.py) ----------------

    def handle_webhook(
        self,
        body: Union[bytes, str],
        signature_header: Optional[str],
        *,
        secret: Optional[str] = None,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> Optional[ValidationReport]:
        """Handle one webhook request from Stripe for this client.

        See :func:`meterstream.handle_webhook`: a meter error report goes to
        :meth:`report_validation_errors`; an event handled before, or of any
        other type, is acknowledged and ignored.

        Args:
            body: the raw request body, unparsed (the signature covers its bytes).
            signature_header: the ``Stripe-Signature`` header.
            secret: the endpoint's ``whsec_...`` secret; default this client's
                ``webhook_secret`` setting, else ``STRIPE_WEBHOOK_SECRET``.
            tolerance: oldest signature timestamp accepted, in seconds.

        Returns:
            The report handled, or None when there was nothing to do.

        Raises:
            WebhookSignatureError: a missing, forged or stale signature (answer 400).
            WebhookError: an oversized or malformed body (answer 400).
            ConfigurationError: no webhook secret is configured.
            DeliveryError: the full event could not be fetched (answer 5xx so
                Stripe retries).
        """
        return _handle_webhook(
            body, signature_header, secret=secret, client=self, tolerance=tolerance
        )

    def report_validation_errors(self, report: ValidationReport) -> None:
        """Take in a Stripe error report (``meterstream.handle_webhook`` calls this).

        Counts the reported events in ``stats()`` (``rejected_by_stripe`` and
        ``rejected_by_stripe_<code>``), moves the named events to the spool's
        dead letters with Stripe's code and message, and calls
        ``on_validation_error(report)``. Never raises: a failing callback or
        spool is logged.

        Args:
            report: Stripe's report of events it accepted, then found invalid:
                each error's code, message, count and, when Stripe names
                them, the events' identifiers.
        """
        self._reports.take(report, self.spool, self._settings.on_validation_error, self._log)
