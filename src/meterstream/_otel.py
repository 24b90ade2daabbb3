"""OpenTelemetry, through the API only: a no-op until the application installs an SDK.

- spans: ``meterstream.session.create`` and one ``meterstream.export`` per
  request, with the library's own HTTP requests hidden from httpx
  auto-instrumentation (as OpenTelemetry's exporters do);
- a ``meterstream.record`` event on the current span for each record, when
  ``otel_span_events`` is on (by default, when an SDK is active);
- metrics about the library, observed from ``stats()`` so they always agree;
- the customer carried in baggage: see ``_baggage``.

Nothing here may break recording or delivery: every call into OpenTelemetry
is guarded, failures are logged once a minute and counted (``otel_errors``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Optional, Protocol

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.trace import SpanKind, Status, StatusCode

from meterstream._internal import RateLimitedLog, report_internal_error
from meterstream._version import __version__

__all__ = [
    "cancel_span",
    "export_span",
    "otel_failed",
    "record_event",
    "sdk_active",
    "session_span",
    "untraced",
]

tracer = trace.get_tracer("meterstream", __version__)
_log = RateLimitedLog()
_errors_lock = threading.Lock()
errors = 0


def otel_failed(exc: BaseException) -> None:
    """Count a failed call into OpenTelemetry (``otel_errors``) and log it, rate-limited."""
    global errors
    with _errors_lock:
        errors += 1
    report_internal_error(exc)
    _log.log(logging.WARNING, "otel", "OpenTelemetry call failed: %r", exc)


def sdk_active() -> bool:
    """True when the application installed a tracer provider (an SDK)."""
    try:
        provider = trace.get_tracer_provider()
        return not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
    except Exception as exc:
        otel_failed(exc)
        return False


# -- spans ---------------------------------------------------------------------------


@contextlib.contextmanager
def _suppressed() -> Iterator[None]:
    """Our own HTTP requests are not traced again by httpx instrumentation."""
    token = otel_context.attach(otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        yield
    finally:
        otel_context.detach(token)


def untraced() -> contextlib.AbstractContextManager[None]:
    """A block whose HTTP requests httpx instrumentation leaves alone (reading
    the meters: the library's own requests, like its sends)."""
    return _suppressed()


class _SpanHandle:
    """What an instrumented block may add to its span (does nothing without one)."""

    __slots__ = ("span", "status")

    def __init__(self, span: Optional[trace.Span]) -> None:
        self.span = span
        self.status: Optional[int] = None

    def set(self, key: str, value: Any) -> None:
        if self.span is not None:
            try:
                self.span.set_attribute(key, value)
            except Exception as exc:
                otel_failed(exc)


@contextlib.contextmanager
def _span(name: str, attributes: dict[str, Any]) -> Iterator[_SpanHandle]:
    try:
        span: Optional[trace.Span] = tracer.start_span(
            name, kind=SpanKind.CLIENT, attributes=attributes
        )
    except Exception as exc:
        otel_failed(exc)
        span = None
    handle = _SpanHandle(span)
    try:
        with _suppressed():
            yield handle
    except BaseException as exc:
        if span is not None:
            try:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            except Exception as otel_exc:
                otel_failed(otel_exc)
        raise
    finally:
        if span is not None:
            try:
                span.end()
            except Exception as exc:
                otel_failed(exc)


@contextlib.contextmanager
def session_span() -> Iterator[_SpanHandle]:
    """The span of ``POST /v2/billing/meter_event_session``."""
    with _span("meterstream.session.create", {}) as handle:
        yield handle


class _Batch(Protocol):
    """What :func:`export_span` reads of an :class:`~meterstream.EventBatch`.

    A protocol, not the class, so that this module stays below the record
    path that imports it (the customer's baggage).
    """

    def __len__(self) -> int: ...

    def event_names(self) -> list[str]: ...


@contextlib.contextmanager
def cancel_span(event_name: str, identifier: str, attempt: int) -> Iterator[_SpanHandle]:
    """The span of one request cancelling an event (a meter event adjustment)."""
    attributes: dict[str, Any] = {
        "meterstream.event_name": event_name,
        "meterstream.identifier": identifier,
        "meterstream.attempt": attempt,
    }
    with _span("meterstream.cancel", attributes) as handle:
        try:
            yield handle
        except BaseException as exc:
            outcome = "retry" if type(exc).__name__ == "RetryableExportError" else "failed"
            status = getattr(exc, "status", None)
            if status is not None:
                handle.set("http.response.status_code", status)
            handle.set("meterstream.outcome", outcome)
            raise
        handle.set("meterstream.outcome", "cancelled")


@contextlib.contextmanager
def export_span(batch: _Batch, attempt: int) -> Iterator[_SpanHandle]:
    """The span of one request sending *batch*; records the export's latency too."""
    attributes: dict[str, Any] = {
        "meterstream.batch.size": len(batch),
        "meterstream.attempt": attempt,
    }
    if sdk_active():
        counts: dict[str, int] = {}
        for name in batch.event_names():
            counts[name] = counts.get(name, 0) + 1
        attributes["meterstream.batch.event_names"] = list(counts)
        attributes["meterstream.batch.event_counts"] = list(counts.values())
    started = time.perf_counter()
    outcome = "error"
    try:
        with _span("meterstream.export", attributes) as handle:
            try:
                yield handle
            except BaseException as exc:
                outcome = "retry" if type(exc).__name__ == "RetryableExportError" else "failed"
                status = getattr(exc, "status", None)
                if status is not None:
                    handle.set("http.response.status_code", status)
                handle.set("meterstream.outcome", outcome)
                raise
            outcome = "sent"
            handle.set("http.response.status_code", 200)
            handle.set("meterstream.outcome", outcome)
    finally:
        _record_latency(time.perf_counter() - started, outcome)


def record_event(event_name: str, value: Any, identifier: str, customer: Optional[str]) -> None:
    """Add a ``meterstream.record`` event to the current span, if it records."""
    try:
        span = trace.get_current_span()
        if not span.is_recording():
            return
        attributes: dict[str, Any] = {
            "meterstream.event_name": event_name,
            "meterstream.value": value if isinstance(value, (int, float)) else str(value),
            "meterstream.identifier": identifier,
        }
        if customer is not None:
            attributes["meterstream.customer_id"] = customer
        span.add_event("meterstream.record", attributes)
    except Exception as exc:
        otel_failed(exc)


# -- metrics -------------------------------------------------------------------------------

_metrics_lock = threading.Lock()

#: (kind, name, stats() keys, unit, description): instruments observed from
#: stats(). Several keys make one instrument with a ``reason`` attribute.
_INSTRUMENTS: tuple[tuple[str, str, tuple[str, ...], str, str], ...] = (
    (
        "create_observable_counter",
        "meterstream.events.recorded",
        ("recorded",),
        "{event}",
        "Events accepted into the buffer",
    ),
    (
        "create_observable_counter",
        "meterstream.events.sent",
        ("sent",),
        "{event}",
        "Events Stripe accepted",
    ),
    (
        "create_observable_counter",
        "meterstream.events.failed",
        ("failed_rejected", "failed_retries_exhausted"),
        "{event}",
        "Events Stripe refused or that ran out of retries",
    ),
    (
        "create_observable_counter",
        "meterstream.events.dropped",
        (
            "dropped_queue_full",
            "dropped_shutdown",
            "dropped_invalid",
            "dropped_missing_customer",
            "dropped_spool_full",
            "dropped_spool_error",
            "dropped_disk_full",
        ),
        "{event}",
        "Events never queued, or discarded",
    ),
    (
        "create_observable_counter",
        "meterstream.events.rejected_by_stripe",
        ("rejected_by_stripe",),
        "{event}",
        "Events Stripe accepted, then reported as invalid (its asynchronous validation)",
    ),
    (
        "create_observable_counter",
        "meterstream.batches.retried",
        ("retried",),
        "{attempt}",
        "Send attempts repeated after a transient failure",
    ),
    (
        "create_observable_counter",
        "meterstream.sessions.opened",
        ("sessions_opened",),
        "{session}",
        "Meter event sessions opened (token rotations)",
    ),
    (
        "create_observable_gauge",
        "meterstream.queue.depth",
        ("queued",),
        "{event}",
        "Events accepted and not yet settled",
    ),
    # With a spool only (spool_path): clients without one have no such keys.
    (
        "create_observable_gauge",
        "meterstream.spool.pending",
        ("spool_pending",),
        "{event}",
        "Events waiting in the durable spool (every process's)",
    ),
    (
        "create_observable_gauge",
        "meterstream.spool.dead_letters",
        ("spool_dead",),
        "{event}",
        "Events in the spool's dead-letter table",
    ),
    (
        "create_observable_gauge",
        "meterstream.spool.size",
        ("spool_bytes",),
        "By",
        "Bytes the spool takes on disk",
    ),
)
_latency: Optional[metrics.Histogram] = None


def _record_latency(seconds: float, outcome: str) -> None:
    histogram = _latency
    if histogram is not None:
        try:
            histogram.record(seconds, {"meterstream.outcome": outcome})
        except Exception as exc:
            otel_failed(exc)


def install_metrics(clients: Any) -> None:
    """Create the library's instruments once; *clients* lists the live clients."""
    global _latency
    with _metrics_lock:
        if _latency is not None:
            return
        try:
            meter = metrics.get_meter("meterstream", __version__)

            def observe(keys: tuple[str, ...], by_reason: bool) -> Any:
                def callback(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
                    observations = []
                    for client in clients():
                        try:
                            stats = client.stats()
                        except Exception as exc:  # pragma: no cover - stats() is plain reads
                            otel_failed(exc)
                            continue
                        for key in keys:
                            if key not in stats:
                                continue
                            attrs = {
                                "meterstream.client": client.name,
                                "meterstream.destination": client.destination,
                            }
                            if by_reason:  # "dropped_queue_full" -> reason "queue_full"
                                attrs["reason"] = key.split("_", 1)[1]
                            observations.append(metrics.Observation(stats[key], attrs))
                    return observations

                return callback

            for create, name, keys, unit, description in _INSTRUMENTS:
                getattr(meter, create)(
                    name,
                    [observe(keys, by_reason=len(keys) > 1)],
                    unit=unit,
                    description=description,
                )
            _latency = meter.create_histogram(
                "meterstream.export.duration",
                unit="s",
                description="Time of one request sending a batch to Stripe",
            )
        except Exception as exc:
            otel_failed(exc)
