"""Delivery: the background flusher, batching, concurrent sends, retries, settlement.

Modelled on OpenTelemetry's ``BatchProcessor``: a bounded buffer, named
daemon threads that wait on a wake-up (never a sleep loop), an early wake
when a batch fills, ``flush``/``shutdown`` with timeouts, and fork hooks.
With an exporter that allows it (the Stripe exporter:
``max_concurrent_requests``), there are that many threads, each taking a
batch, numbering it and sending it itself, so that many are in flight at
once: one request at a time to a server 50 ms away caps delivery at two
thousand events a second. A flush waits until every batch numbered before
it has settled.

A batch is encoded once, so it keeps its identifiers and its idempotency key
through every retry. The durable spool (a later issue) will sit between
``Buffer.take`` and ``_deliver``.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import deque
from typing import Any, Callable, Optional

from . import _events
from ._buffer import Buffer, FlushMarker
from ._config import Settings
from ._events import EventBatch
from ._exporters.base import Exporter, RetryableExportError
from ._internal import RateLimitedLog, report_internal_error
from ._otel import export_span
from .errors import DeliveryError

__all__ = ["Backoff", "Delivery"]

#: Batch numbers for Idempotency-Keys; atomic under the GIL.
_batch_numbers = itertools.count(1)

#: Evicted events kept for on_delivery_error between two flusher runs; past
#: this they are only counted (the buffer's memory bound comes first).
EVICTED_KEPT = 10_000
#: How long shutdown() waits, past its deadline, for threads whose requests
#: it has just aborted to settle their batches.
SHUTDOWN_GRACE = 0.25
#: The longest Retry-After honoured before retrying anyway.
MAX_RETRY_AFTER = 60.0


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
    """Moves events from the buffer to the exporter, on its threads or the caller's."""

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
        self._interval = settings.flush_interval
        self._keys_for = settings.payload_keys_for
        self._senders = max(1, int(getattr(exporter, "max_concurrency", 1)))
        if settings.on_delivery_error is not None and settings.overflow == "drop_oldest":
            buffer.evicted = deque(maxlen=EVICTED_KEPT)
        self.sent = 0
        self.retried = 0
        self.failed_rejected = 0
        self.failed_retries_exhausted = 0
        self.dropped_shutdown = 0
        #: Called by the flusher on each wake (the client re-checks OpenTelemetry).
        self.on_tick: Optional[Callable[[], None]] = None
        #: Called once the threads run (the client's record path may go fast).
        self.on_start: Optional[Callable[[], None]] = None
        self._reset_state()

    def _reset_state(self) -> None:
        """Threads, locks and batch bookkeeping: fresh at start and in a forked child."""
        self._thread: Optional[threading.Thread] = None
        #: True once a thread was started: the record path's cheap check.
        self.started = False
        self._closing = False
        self._start_lock = threading.Lock()
        #: Set by shutdown(): interrupts backoff waits and ends the threads.
        self._stop = threading.Event()
        self._hard_deadline = float("inf")
        #: Taking a batch from the buffer, numbering it and settling it.
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._next_seq = 0
        self._inflight: dict[int, EventBatch] = {}
        self._settled_upto = -1  # every batch numbered up to this one has settled
        self._settled_ahead: set[int] = set()
        self._markers: deque[tuple[int, FlushMarker]] = deque()
        self._abandoned: set[int] = set()

    # -- counters ---------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        stats = getattr(self._exporter, "stats", None)
        extra: dict[str, int] = stats() if callable(stats) else {}
        with self._lock:
            inflight = sum(len(batch) for batch in self._inflight.values())
        return {
            "sent": self.sent,
            "retried": self.retried,
            "failed_rejected": self.failed_rejected,
            "failed_retries_exhausted": self.failed_retries_exhausted,
            "dropped_shutdown": self.dropped_shutdown,
            "inflight": inflight,
            "sessions_opened": extra.get("sessions_opened", 0),
            "requests": extra.get("requests", 0),
        }

    # -- threads ------------------------------------------------------------------------

    def ensure_started(self) -> None:
        """Start the delivery threads if they are not running."""
        with self._start_lock:
            if self.started or self._closing:
                return
            # The first also sends what waits when flush_interval passes; the
            # others wake only for full batches (and flushes).
            threads = [
                threading.Thread(target=self._run, args=(self._interval,), name=name, daemon=True)
                for name in ["meterstream-flusher"]
                + [f"meterstream-sender-{n}" for n in range(1, self._senders)]
            ]
            try:
                for thread in reversed(threads):
                    thread.start()
            except RuntimeError:
                # Interpreter shutting down: no new threads. flush() and
                # shutdown() send on the caller's thread instead.
                self._stop.set()
                return
            self._thread = threads[0]
            self._workers = threads[1:]
            self.started = True
        if self.on_start is not None:
            self.on_start()

    def _run(self, interval: Optional[float]) -> None:
        """A delivery thread: take a batch when one is full (or flushed), send it, repeat.

        Each thread takes batches itself and sends them on its own stack: no
        hand-over between threads, so a batch costs the app's threads as few
        trips through the GIL as its I/O needs. At most one batch per thread
        is out; the rest wait in the buffer, under its bound and policy.
        """
        wake = self._buffer.wake
        clock = self._clock
        # When the flusher next sends what waits, full batch or not. Timed
        # from the clock, not from wait() returning False: another thread
        # may have taken the batch this one was woken for.
        due = float("inf") if interval is None else clock() + interval
        while not self._stop.is_set():
            wake.wait(None if interval is None else max(0.0, due - clock()))
            if self._stop.is_set():
                return
            everything = False
            if interval is not None:
                now = clock()
                if now >= due:
                    everything = True
                    due = now + interval
            try:
                if self.on_tick is not None:
                    self.on_tick()
                self._report_evicted()
                while self._dispatch_next(everything, stoppable=True):
                    pass
            except Exception as exc:  # the thread must outlive any bug
                report_internal_error(exc)
                self._log.log(logging.ERROR, "flusher", "meterstream flusher error: %r", exc)

    # -- batches ------------------------------------------------------------------------

    def _dispatch_next(self, everything: bool, stoppable: bool) -> bool:
        """Take one batch from the buffer, number it, and send it on this thread.
        False when there was nothing (or no longer leave) to take.

        Taking and numbering happen under the lock shutdown() takes to abandon
        what is in flight, so no batch is ever out of the buffer and yet
        unknown to the bookkeeping.
        """
        buffer = self._buffer
        batch: Optional[EventBatch] = None
        with self._lock:
            # Cleared before looking, so that a record that fills a batch
            # from now on sets it again.
            buffer.wake.clear()
            if (stoppable and self._stop.is_set()) or not buffer.items:
                return False
            if len(buffer) < self._batch_size and not (everything or buffer.has_markers):
                return False
            raw, marker = buffer.take(self._batch_size)
            if raw:
                batch = EventBatch(raw, self._keys_for)
                seq = self._next_seq
                self._next_seq += 1
                self._inflight[seq] = batch
            if marker is not None:
                if self._settled_upto >= self._next_seq - 1:
                    marker.done.set()
                else:
                    self._markers.append((self._next_seq - 1, marker))
            if len(buffer) >= self._batch_size or buffer.has_markers:
                buffer.wake.set()  # another full batch: one more thread may take it
        if batch is not None:
            self._deliver(seq, batch)
        return True

    def _deliver(self, seq: int, batch: EventBatch) -> None:
        """Send one batch until it is accepted, refused, or out of retry time."""
        # Unique across processes and restarts (the identifier prefix is 80
        # random bits, new in a forked child) without a uuid4 per batch,
        # whose getrandom() call lets go of the GIL.
        batch_id = f"{_events.identifier_prefix()}b{next(_batch_numbers)}"
        started = self._clock()
        deadline = min(started + self._settings.max_retry_time, self._hard_deadline)
        attempt = 0
        while True:
            attempt += 1
            if seq in self._abandoned:
                return  # shutdown() gave it up (and reported it) before it went out
            if attempt > 1 and self._stop.is_set():
                self._settle(
                    seq, batch, DeliveryError("shut down before delivery", reason="shutdown")
                )
                return
            try:
                with export_span(batch, attempt):
                    self._exporter.export(batch, batch_id=batch_id)
            except RetryableExportError as exc:
                delay = exc.retry_after
                if delay is None or (delay == 0 and attempt > 2):
                    delay = self._backoff.delay(attempt)
                # Honour Retry-After, up to a minute: a server asking for an
                # hour (or forever) must not fail the batch on the spot.
                delay = min(delay, MAX_RETRY_AFTER)
                if not self._wait_to_retry(seq, batch, attempt, started, deadline, delay, exc):
                    return
                continue
            except DeliveryError as exc:
                self._settle(seq, batch, exc)
                return
            except Exception as exc:
                # A bug or an unexpected failure in the exporter: the events
                # keep their identifiers, so trying again is safe.
                report_internal_error(exc)
                delay = self._backoff.delay(attempt)
                if not self._wait_to_retry(seq, batch, attempt, started, deadline, delay, exc):
                    return
                continue
            self._settle(seq, batch, None)
            return

    def _wait_to_retry(
        self,
        seq: int,
        batch: EventBatch,
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
                seq,
                batch,
                DeliveryError(
                    f"shut down before delivery: {exc}", reason="shutdown", status=status
                ),
            )
            return False
        now = self._clock()
        if now + delay > deadline:
            reason = "shutdown" if deadline == self._hard_deadline else "retries_exhausted"
            self._settle(
                seq,
                batch,
                DeliveryError(
                    f"gave up after {attempt} attempts in {now - started:.1f}s: {exc}",
                    reason=reason,
                    status=status,
                ),
            )
            return False
        with self._lock:
            self.retried += 1
        self._log.log(
            logging.WARNING,
            "retry",
            "meterstream: sending %d events failed (%s); retrying",
            len(batch),
            exc,
        )
        if delay > 0 and self._stop.wait(delay):
            self._settle(
                seq,
                batch,
                DeliveryError(
                    f"shut down while waiting to retry: {exc}", reason="shutdown", status=status
                ),
            )
            return False
        return True

    def _settle(self, seq: int, batch: EventBatch, error: Optional[DeliveryError]) -> None:
        """Count a batch's final outcome exactly once, and release flushes waiting on it."""
        count = len(batch)
        with self._lock:
            if seq in self._abandoned or self._inflight.pop(seq, None) is None:
                return  # shutdown() already gave it up and counted it
            if error is None:
                self.sent += count
            elif error.reason == "shutdown":
                self.dropped_shutdown += count
            elif error.reason == "retries_exhausted":
                self.failed_retries_exhausted += count
            else:
                self.failed_rejected += count
            self._advance(seq)
        if error is not None:
            self._report(list(batch), error)

    def _advance(self, seq: int) -> None:
        # Called with the lock held: move the settled watermark, fire markers.
        self._settled_ahead.add(seq)
        while self._settled_upto + 1 in self._settled_ahead:
            self._settled_upto += 1
            self._settled_ahead.discard(self._settled_upto)
        markers = self._markers
        while markers and markers[0][0] <= self._settled_upto:
            markers.popleft()[1].done.set()

    def _report(self, events: list[dict[str, Any]], error: DeliveryError) -> None:
        self._log.log(
            logging.ERROR,
            "failed:" + error.reason,
            "meterstream: %d events were not delivered: %s",
            len(events),
            error,
        )
        callback = self._settings.on_delivery_error
        if callback is not None:
            try:
                callback(events, error)
            except Exception as exc:
                self._log.log(
                    logging.ERROR, "callback", "meterstream: on_delivery_error raised %r", exc
                )

    def _report_evicted(self) -> None:
        """Hand events ``drop_oldest`` evicted to ``on_delivery_error`` (counted already)."""
        evicted = self._buffer.evicted
        if not evicted or self._settings.on_delivery_error is None:
            return
        raw = []
        while True:
            try:  # another delivery thread may be emptying it too
                raw.append(evicted.popleft())
            except IndexError:
                break
        if not raw:
            return
        self._report(
            list(EventBatch(raw, self._keys_for)),
            DeliveryError(
                f"{len(raw)} events were evicted from the full buffer (overflow=drop_oldest)",
                reason="queue_full",
            ),
        )

    # -- caller-side entry points ---------------------------------------------------------

    def flush_on_caller(self, deadline: float = float("inf")) -> bool:
        """Send everything waiting on this thread (``sync_mode``, or no thread possible)."""
        buffer = self._buffer
        try:
            while buffer.items:
                if self._clock() >= deadline:
                    return False
                self._dispatch_next(everything=True, stoppable=False)
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
        """Drain within *timeout*, then stop the threads and the exporter.

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
        else:
            done = self.flush_on_caller(deadline)
        self._stop.set()
        self._buffer.wake.set_all()
        threads = [t for t in (thread, *self._workers) if t is not None]
        for worker in threads:
            worker.join(max(0.0, deadline - self._clock()))
        # Closing the exporter aborts requests still in flight (a hanging or
        # trickling server); the threads then settle their batches within a
        # short grace, so that what they report is reported before we return.
        self._close_exporter()
        grace = self._clock() + SHUTDOWN_GRACE
        for worker in threads:
            worker.join(max(0.0, grace - self._clock()))
        self._abandon_inflight()
        self._drop_leftovers()
        return done and not self._buffer.items

    def _close_exporter(self) -> None:
        try:
            self._exporter.shutdown()
        except Exception as exc:
            report_internal_error(exc)

    def _abandon_inflight(self) -> None:
        """Requests still in flight past the deadline (a hanging server): give them up."""
        with self._lock:
            abandoned = list(self._inflight.items())
            for seq, batch in abandoned:
                self._abandoned.add(seq)
                del self._inflight[seq]
                self.dropped_shutdown += len(batch)
                self._advance(seq)
        for _, batch in abandoned:
            self._report(
                list(batch),
                DeliveryError(
                    f"{len(batch)} events were in flight at shutdown and may not have been "
                    "delivered",
                    reason="shutdown",
                ),
            )

    def _drop_leftovers(self) -> None:
        left: list[tuple[Any, ...]] = []
        markers: list[FlushMarker] = []
        while self._buffer.items:
            raw, marker = self._buffer.take(len(self._buffer.items))
            left.extend(raw)
            if marker is not None:
                markers.append(marker)
        if left:
            self.dropped_shutdown += len(left)
            self._report(
                list(EventBatch(left, self._keys_for)),
                DeliveryError(
                    f"{len(left)} events could not be delivered before shutdown", reason="shutdown"
                ),
            )
        for marker in markers:
            marker.done.set()
        self._report_evicted()

    def after_fork_in_child(self) -> None:
        self._reset_state()
        self.sent = self.retried = 0
        self.failed_rejected = self.failed_retries_exhausted = self.dropped_shutdown = 0
