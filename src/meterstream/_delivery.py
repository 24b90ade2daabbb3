"""Delivery: the background flusher thread, batching, retries and settlement.

Modelled on OpenTelemetry's ``BatchProcessor``: a bounded buffer, one named
daemon thread per client that waits on an ``Event`` (never a sleep loop), an
early wake when a batch fills, ``flush``/``shutdown`` with timeouts, and fork
hooks. A batch is encoded once, so it keeps its identifiers and its
idempotency key through every retry. The durable spool (a later issue) will
sit between ``Buffer.take`` and ``_deliver``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import deque
from typing import Any, Callable, Optional

from ._buffer import Buffer, FlushMarker
from ._config import Settings
from ._events import EventBatch
from ._exporters.base import Exporter, RetryableExportError
from ._internal import RateLimitedLog, report_internal_error
from .errors import DeliveryError

__all__ = ["Backoff", "Delivery"]

#: Evicted events kept for on_delivery_error between two flusher runs; past
#: this they are only counted (the buffer's memory bound comes first).
EVICTED_KEPT = 10_000


class Backoff:
    """Exponential backoff with full jitter: ``uniform(0, min(cap, base * 2**n))``."""

    def __init__(
        self, base: float = 0.5, cap: float = 20.0, rng: Callable[[], float] = random.random
    ) -> None:
        self.base = base
        self.cap = cap
        self._rng = rng

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** min(attempt, 30))
        return float(ceiling * self._rng())


class Delivery:
    """Moves events from the buffer to the exporter, on its thread or the caller's."""

    def __init__(
        self,
        buffer: Buffer,
        exporter: Exporter,
        settings: Settings,
        log: RateLimitedLog,
        clock: Callable[[], float] = time.monotonic,
        backoff: Optional[Backoff] = None,
    ) -> None:
        self._buffer = buffer
        self._exporter = exporter
        self._settings = settings
        self._log = log
        self._clock = clock
        self._backoff = backoff or Backoff(settings.retry_initial_delay, settings.retry_max_delay)
        self._batch_size = settings.batch_size
        self._keys_for = settings.payload_keys_for
        if settings.on_delivery_error is not None and settings.overflow == "drop_oldest":
            buffer.evicted = deque(maxlen=EVICTED_KEPT)
        self._interval = settings.flush_interval
        self._thread: Optional[threading.Thread] = None
        #: True once a thread was started (or cannot be): the record path's check.
        self.started = False
        self._start_lock = threading.Lock()
        self._send_lock = threading.Lock()  # one sender at a time keeps batches in order
        #: Set by shutdown(): interrupts backoff waits and ends the thread.
        self._stop = threading.Event()
        self._closing = False
        self._hard_deadline = float("inf")
        self._inflight: Optional[EventBatch] = None
        #: Batches shutdown() gave up on while their request was in flight; if
        #: that request ever finishes, its outcome is not counted twice.
        self._abandoned: list[EventBatch] = []
        self._settle_lock = threading.Lock()
        self.sent = 0
        self.retried = 0
        self.failed_rejected = 0
        self.failed_retries_exhausted = 0
        self.dropped_shutdown = 0

    # -- counters ---------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        stats = getattr(self._exporter, "stats", None)
        extra: dict[str, int] = stats() if callable(stats) else {}
        inflight = self._inflight
        return {
            "sent": self.sent,
            "retried": self.retried,
            "failed_rejected": self.failed_rejected,
            "failed_retries_exhausted": self.failed_retries_exhausted,
            "dropped_shutdown": self.dropped_shutdown,
            "inflight": len(inflight) if inflight else 0,
            "sessions_opened": extra.get("sessions_opened", 0),
            "requests": extra.get("requests", 0),
        }

    # -- the thread -------------------------------------------------------------------

    def ensure_started(self) -> None:
        """Start the flusher thread if it is not running."""
        with self._start_lock:
            if self.started or self._closing:
                return
            thread = threading.Thread(target=self._run, name="meterstream-flusher", daemon=True)
            try:
                thread.start()
            except RuntimeError:
                # Interpreter shutting down: no new threads. flush() and
                # shutdown() send on the caller's thread instead.
                return
            self._thread = thread
            self.started = True

    def _run(self) -> None:
        wake = self._buffer.wake
        while not self._stop.is_set():
            timed_out = not wake.wait(self._interval)
            wake.clear()
            if self._stop.is_set():
                return
            try:
                self._send_ready(everything=timed_out)
                self._report_evicted()
            except Exception as exc:  # the thread must outlive any bug
                report_internal_error(exc)
                self._log.log(logging.ERROR, "flusher", "meterstream flusher error: %r", exc)

    def _send_ready(self, everything: bool) -> None:
        """Send full batches; with *everything* (or a flush pending) the tail too."""
        buffer = self._buffer
        size = self._batch_size
        while not self._stop.is_set() and buffer.items:
            if len(buffer) < size and not (everything or buffer.has_markers):
                return
            self._send_batch(*buffer.take(size))

    # -- one batch ---------------------------------------------------------------------------

    def _send_batch(self, raw: list[tuple[Any, ...]], marker: Optional[FlushMarker]) -> None:
        if raw:
            wire = EventBatch(raw, self._keys_for)
            with self._send_lock:
                self._inflight = wire
                self._deliver(wire, uuid.uuid4().hex)
        if marker is not None:
            marker.done.set()

    def _deliver(self, wire: EventBatch, batch_id: str) -> None:
        """Send one batch until it is accepted, refused, or out of retry time."""
        started = self._clock()
        deadline = min(started + self._settings.max_retry_time, self._hard_deadline)
        attempt = 0
        while True:
            attempt += 1
            try:
                self._exporter.export(wire, batch_id=batch_id)
            except RetryableExportError as exc:
                delay = exc.retry_after
                if delay is None or (delay == 0 and attempt > 2):
                    delay = self._backoff.delay(attempt)
                if not self._wait_to_retry(wire, attempt, started, deadline, delay, exc):
                    return
                continue
            except DeliveryError as exc:
                self._settle(wire, exc)
                return
            except Exception as exc:
                # A bug or an unexpected failure in the exporter: the events
                # keep their identifiers, so trying again is safe.
                report_internal_error(exc)
                delay = self._backoff.delay(attempt)
                if not self._wait_to_retry(wire, attempt, started, deadline, delay, exc):
                    return
                continue
            self._settle(wire, None)
            return

    def _wait_to_retry(
        self,
        wire: EventBatch,
        attempt: int,
        started: float,
        deadline: float,
        delay: float,
        exc: Exception,
    ) -> bool:
        """Wait *delay* before the next attempt; False (and settled) when giving up."""
        status = getattr(exc, "status", None)
        if self._stop.is_set():
            self._settle(
                wire,
                DeliveryError(
                    f"shut down before delivery: {exc}", reason="shutdown", status=status
                ),
            )
            return False
        now = self._clock()
        if now + delay > deadline:
            reason = "shutdown" if deadline == self._hard_deadline else "retries_exhausted"
            self._settle(
                wire,
                DeliveryError(
                    f"gave up after {attempt} attempts in {now - started:.1f}s: {exc}",
                    reason=reason,
                    status=status,
                ),
            )
            return False
        self.retried += 1
        self._log.log(
            logging.WARNING,
            "retry",
            "meterstream: sending %d events failed (%s); retrying",
            len(wire),
            exc,
        )
        if delay > 0 and self._stop.wait(delay):
            self._settle(
                wire,
                DeliveryError(
                    f"shut down while waiting to retry: {exc}", reason="shutdown", status=status
                ),
            )
            return False
        return True

    def _settle(
        self, wire: EventBatch, error: Optional[DeliveryError], abandon: bool = False
    ) -> None:
        """Count a batch's final outcome exactly once."""
        count = len(wire)
        with self._settle_lock:
            if any(w is wire for w in self._abandoned):
                return  # shutdown() already gave these up and counted them
            if abandon:
                if self._inflight is not wire:
                    return  # it finished while shutdown() was deciding
                self._abandoned.append(wire)
            if self._inflight is wire:
                self._inflight = None
            if error is None:
                self.sent += count
            elif error.reason == "shutdown":
                self.dropped_shutdown += count
            elif error.reason == "retries_exhausted":
                self.failed_retries_exhausted += count
            else:
                self.failed_rejected += count
        if error is None:
            return
        self._log.log(
            logging.ERROR,
            "failed:" + error.reason,
            "meterstream: %d events were not delivered: %s",
            count,
            error,
        )
        callback = self._settings.on_delivery_error
        if callback is not None:
            try:
                callback(list(wire), error)
            except Exception as exc:
                self._log.log(
                    logging.ERROR, "callback", "meterstream: on_delivery_error raised %r", exc
                )

    def _report_evicted(self) -> None:
        """Hand events ``drop_oldest`` evicted to ``on_delivery_error`` (counted already)."""
        evicted = self._buffer.evicted
        callback = self._settings.on_delivery_error
        if not evicted or callback is None:
            return
        raw = []
        while evicted:
            raw.append(evicted.popleft())
        error = DeliveryError(
            f"{len(raw)} events were evicted from the full buffer (overflow=drop_oldest)",
            reason="queue_full",
        )
        try:
            callback(list(EventBatch(raw, self._keys_for)), error)
        except Exception as exc:
            self._log.log(
                logging.ERROR, "callback", "meterstream: on_delivery_error raised %r", exc
            )

    # -- caller-side entry points ---------------------------------------------------------

    def flush_on_caller(self, deadline: float = float("inf")) -> bool:
        """Send everything waiting on this thread (``sync_mode``, or no thread possible)."""
        buffer = self._buffer
        try:
            while buffer.items:
                if self._clock() >= deadline:
                    return False
                self._send_batch(*buffer.take(self._batch_size))
            return True
        finally:
            self._report_evicted()

    def flush(self, timeout: Optional[float]) -> bool:
        """True once every event recorded before the call is settled."""
        marker = self._buffer.add_marker()
        if not (self._settings.sync_mode or self._closing):
            self.ensure_started()
        thread = self._thread
        if thread is None or not thread.is_alive():
            deadline = float("inf") if timeout is None else self._clock() + timeout
            self.flush_on_caller(deadline)
        return marker.done.wait(timeout)

    def shutdown(self, timeout: float) -> bool:
        """Drain within *timeout*, then stop the thread and the exporter.

        Whatever could not be delivered in time is counted as dropped at
        shutdown and handed to ``on_delivery_error``.
        """
        with self._start_lock:
            self._closing = True
        deadline = self._clock() + timeout
        self._hard_deadline = deadline
        thread = self._thread
        if thread is not None and thread.is_alive():
            done = self.flush(timeout)
            self._stop.set()
            self._buffer.wake.set()
            thread.join(max(0.0, deadline - self._clock()))
            if thread.is_alive():
                done = False
                # A request still in flight past the deadline (a hanging
                # server): give its events up now, and ignore its outcome.
                inflight = self._inflight
                if inflight:
                    self._settle(
                        inflight,
                        DeliveryError(
                            f"{len(inflight)} events were in flight at shutdown and may not "
                            "have been delivered",
                            reason="shutdown",
                        ),
                        abandon=True,
                    )
        else:
            done = self.flush_on_caller(deadline)
        left: list[tuple[Any, ...]] = []
        markers: list[FlushMarker] = []
        while self._buffer.items:
            batch, marker = self._buffer.take(len(self._buffer.items))
            left.extend(batch)
            if marker is not None:
                markers.append(marker)
        if left:
            done = False
            self._settle(
                EventBatch(left, self._keys_for),
                DeliveryError(
                    f"{len(left)} events could not be delivered before shutdown", reason="shutdown"
                ),
            )
        for marker in markers:
            marker.done.set()
        self._report_evicted()
        self._stop.set()
        try:
            self._exporter.shutdown()
        except Exception as exc:
            report_internal_error(exc)
        return done

    def after_fork_in_child(self) -> None:
        self._thread = None
        self.started = False
        self._start_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._settle_lock = threading.Lock()
        self._stop = threading.Event()
        self._inflight = None
        self._abandoned = []
        self.sent = self.retried = 0
        self.failed_rejected = self.failed_retries_exhausted = self.dropped_shutdown = 0
