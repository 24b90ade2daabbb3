"""Delivery: the background senders, batching, retries, settlement.

Modelled on OpenTelemetry's ``BatchProcessor``: a bounded buffer, named
daemon threads that wait on a wake-up (never a sleep loop), an early wake
when a batch fills, ``flush``/``shutdown`` with timeouts, and fork hooks.
With an exporter that allows it (the Stripe exporter:
``max_concurrent_requests``), there are that many threads, each taking a
batch, numbering it and sending it itself, so that many are in flight at
once. A flush waits until every batch numbered before it has settled.

A batch that failed does not hold its thread: it goes to a retry queue
ordered by when it may go again, and whichever thread is free takes the next
due batch (retries first, then new batches from the buffer). How long a
batch waits, and whether every thread holds back, is the :class:`Pacer`'s
call, from the server's recent answers to every batch. A batch keeps its
identifiers and its Idempotency-Key through every retry; when it must lose
events (a 400 naming one, one that cannot be encoded, one grown too old),
the rest go on with the same identifiers under a new key.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

from meterstream._config.settings import Settings
from meterstream._delivery.event_queue import EventQueue
from meterstream._delivery.evictions import EvictionReporter
from meterstream._delivery.ledger import Job, Ledger
from meterstream._delivery.pacing import MAX_RETRY_AFTER, Backoff, Pacer
from meterstream._delivery.refusals import Split, split_expired, split_refused, split_unencodable
from meterstream._delivery.retry_queue import RetryQueue
from meterstream._exporters.base import Exporter, RetryableExportError
from meterstream._internal import RateLimitedLog, report_internal_error
from meterstream._otel import export_span
from meterstream._record.checks import PAST_WINDOW
from meterstream._record.events import EventBatch, identifier_prefix
from meterstream.errors import DeliveryError

__all__ = ["Backoff", "Delivery"]

#: How long shutdown() keeps, within its timeout, for aborting requests still
#: in flight and letting their threads settle them.
SHUTDOWN_GRACE = 0.05
#: While shutting down, the longest a failed batch waits before trying again.
DRAIN_RETRY_DELAY = 0.02
#: 401s in a row for one batch that are resent at once (each rotates the
#: session); past that, the batch waits like any failure.
MAX_QUICK_ROTATIONS = 2


def same_identifier(raw: object, identifier: str) -> bool:
    """Whether a recorded event's identifier (a string given, or the number of
    a generated one) is *identifier*."""
    if type(raw) is str:
        return raw == identifier
    return identifier_prefix() + str(raw) == identifier


def events_text(count: int) -> str:
    return f"{count} event" if count == 1 else f"{count} events"


class Delivery:
    """Moves events from the buffer to the exporter, on its threads or the caller's."""

    def __init__(
        self,
        buffer: EventQueue,
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
        self._counters = buffer.counters
        #: The buffer's: it wakes a thread when that many wait.
        self._batch_size = buffer.batch_size
        self._interval = settings.flush_interval
        self._keys_for = settings.payload_keys_for
        self._senders = max(1, int(exporter.max_concurrency))
        #: Batches waiting to retry past which no new batch is taken from the
        #: buffer: together they hold at most a quarter of max_queue_size more.
        self._max_waiting = max(4 * self._senders, settings.max_queue_size // self._batch_size // 4)
        self._evictions: Optional[EvictionReporter] = None
        if settings.on_delivery_error is not None and settings.overflow == "drop_oldest":
            self._evictions = EvictionReporter(buffer, self._report, self._keys_for)
        #: Called by the flusher on each wake (the client re-checks OpenTelemetry).
        self.on_tick: Optional[Callable[[], None]] = None
        #: Called once the threads run (the client's record path may go fast).
        self.on_start: Optional[Callable[[], None]] = None
        #: Called with each batch taken from the buffer, before its first
        #: attempt (the client checks its event names against the meters).
        self.before_send: Optional[Callable[[EventBatch], None]] = None
        self._reset_state()

    def _reset_state(self) -> None:
        """Threads, locks and batch bookkeeping: fresh at start and in a forked child."""
        self._thread: Optional[threading.Thread] = None
        #: True once a thread was started: the record path's cheap check.
        self.started = False
        self._closing = False
        self._draining = False
        self._start_lock = threading.Lock()
        #: Set by shutdown(): interrupts waits and ends the threads.
        self._stop = threading.Event()
        self._never = threading.Event()
        self._hard_deadline = float("inf")
        #: Taking a batch, numbering it, queueing retries and settling.
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        #: The numbered batches not yet settled, and the flushes waiting on them.
        self._ledger = Ledger()
        #: Batches waiting to retry, soonest first.
        self._retry = RetryQueue()
        self._pacer = Pacer(self._backoff, 2 * self._senders, self._clock)

    # -- counters ---------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """What delivery knows beyond the shared counters: events in flight, and
        the exporter's own counts."""
        extra = self._exporter.stats()
        with self._lock:
            inflight = self._ledger.events_in_flight()
        return {
            "inflight": inflight,
            "sessions_opened": extra.get("sessions_opened", 0),
            "requests": extra.get("requests", 0),
        }

    # -- cancellations ------------------------------------------------------------------

    def withdraw(self, identifier: str) -> bool:
        """Remove the event *identifier* from the buffer before it leaves; False
        when it is not waiting there (in flight, settled, or never recorded).

        A scan, under the lock batches are taken with: cancellations are
        rare, and the record path pays nothing for them.
        """
        items = getattr(self._buffer, "items", None)
        if items is None:
            return False  # a spool: it withdraws its own rows
        with self._lock:
            for index, item in enumerate(items):
                if type(item) is tuple and same_identifier(item[4], identifier):
                    # Appends only add at the other end, and takes hold this
                    # lock: the index still points at the item.
                    del items[index]
                    return True
        return False

    def in_flight(self, identifier: str) -> bool:
        """Whether the event *identifier* is on its way: taken, not yet settled."""
        with self._lock:
            batches = self._ledger.batches()
        return any(
            same_identifier(event[4], identifier)
            for batch in batches
            for event in batch.raw_events()
        )

    # -- threads ------------------------------------------------------------------------

    def ensure_started(self) -> None:
        """Start the delivery threads if they are not running."""
        with self._start_lock:
            if self.started or self._closing:
                return
            # The first also sends what waits when flush_interval passes; the
            # others wake for full batches, flushes and retries that are due.
            threads = [
                threading.Thread(target=self._run, args=(self._interval,), name=name, daemon=True)
                for name in ["meterstream-flusher"]
                + [f"meterstream-sender-{n}" for n in range(1, self._senders)]
            ]
            try:
                for thread in reversed(threads):
                    thread.start()
                if self._evictions is not None:
                    self._evictions.start()
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
        """A delivery thread: take the next due batch (a retry, or a new one), send it, repeat.

        Each thread takes batches itself and sends them on its own stack: no
        hand-over between threads, so a batch costs the app's threads as few
        trips through the GIL as its I/O needs. A batch that fails goes to
        the retry queue; the thread moves on.
        """
        wake = self._buffer.wake
        clock = self._clock
        # When the flusher next sends what waits, full batch or not. Timed
        # from the clock, not from wait() returning False: another thread
        # may have taken the batch this one was woken for.
        due = float("inf") if interval is None else clock() + interval
        while not self._stop.is_set():
            until = min(due, self._retry.next_at())
            timeout = None if until == float("inf") else max(0.0, until - clock())
            if len(self._retry) >= self._max_waiting:
                # No new batch may be taken: wake for retries only (the wake
                # flag stays set, for when there is room again).
                self._stop.wait(timeout)
            else:
                wake.wait(timeout)
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
                self._buffer.tick()
                while self._send_next(everything, self._stop):
                    pass
            except Exception as exc:  # the thread must outlive any bug
                report_internal_error(exc)
                self._log.log(logging.ERROR, "flusher", "delivery thread error: %r", exc)

    # -- batches ------------------------------------------------------------------------

    def _send_next(self, everything: bool, stop: threading.Event) -> bool:
        """Send the next due batch on this thread; False when there was none."""
        buffer = self._buffer
        if len(self._retry) < self._max_waiting:
            # Cleared before looking, so that a record that fills a batch
            # from now on sets it again.
            buffer.wake.clear()
        if self._retry.next_at() > self._clock() and not self._buffer_ready(everything):
            return False
        # Wait for the pace before taking the batch: a batch is never held
        # by a thread that waits.
        if not self._pacer.wait_turn(stop):
            return False
        took, job, fresh = self._take(everything)
        if job is not None:
            if fresh and self.before_send is not None:
                try:
                    self.before_send(job.batch)
                except Exception as exc:
                    report_internal_error(exc)
            self._attempt(job)
        return took

    def _buffer_ready(self, everything: bool) -> bool:
        buffer = self._buffer
        if not buffer.waiting() or len(self._retry) >= self._max_waiting:
            return False
        return len(buffer) >= self._batch_size or everything or buffer.has_markers

    def _take(self, everything: bool) -> tuple[bool, Optional[Job], bool]:
        """The next due retry, else a new batch from the buffer, numbered (fresh).

        Under the lock shutdown() takes to abandon what is in flight, so no
        batch is ever out of the buffer and yet unknown to the bookkeeping.
        """
        buffer = self._buffer
        job: Optional[Job] = None
        with self._lock:
            now = self._clock()
            job = self._retry.pop_due(now)
            if job is not None:
                if self._retry.next_at() <= now or self._buffer_ready(everything):
                    buffer.wake.set()  # more due: one more thread may help
                return True, job, False
            if not self._buffer_ready(everything):
                return False, None, False
            raw, marker = buffer.take(self._batch_size)
            if raw:
                batch = EventBatch(raw, self._keys_for)
                job = self._ledger.open(batch, now + self._settings.max_retry_time)
            if marker is not None:
                self._ledger.mark(marker)
            if len(buffer) >= self._batch_size or buffer.has_markers:
                buffer.wake.set()  # another full batch: one more thread may take it
        # A spool may have had nothing to hand out after all (held by others).
        return bool(raw) or marker is not None, job, job is not None

    def _attempt(self, job: Job) -> None:
        """Send *job* once; settle it, split it, or queue it to retry."""
        if job.done:
            return  # shutdown() gave it up (and reported it)
        if job.oldest < time.time() - PAST_WINDOW:
            # Events past Stripe's 35-day window: report each, send the rest.
            self._replace(job, split_expired(job.batch, time.time() - PAST_WINDOW))
            return
        job.attempt += 1
        try:
            with export_span(job.batch, job.attempt):
                self._exporter.export(job.batch, batch_id=job.batch_id)
        except RetryableExportError as exc:
            if exc.status == 401 and exc.retry_after == 0 and job.rotations < MAX_QUICK_ROTATIONS:
                # The session was rotated: the same batch again, at once.
                job.rotations += 1
                self._reschedule(job, 0.0, exc)
                return
            job.rotations = 0
            self._pacer.failed(exc.retry_after)
            delay = exc.retry_after
            if delay is None or delay <= 0:
                delay = self._pacer.retry_delay(job.attempt)
            self._reschedule(job, min(delay, MAX_RETRY_AFTER), exc)
        except DeliveryError as exc:
            split = None
            if exc.reason == "rejected" and exc.status == 400:
                # Report the event it names and resend the rest, or bisect.
                split = split_refused(len(job.batch), exc)
            if split is None:
                self._settle(job, exc)
            else:
                self._replace(job, split)
        except Exception as exc:
            self._export_failed(job, exc)
        else:
            if self._pacer.succeeded():
                self._retry_now()
            self._settle(job, None)

    def _reschedule(self, job: Job, delay: float, exc: Exception) -> None:
        """Queue *job* to go again after *delay*; or settle it when out of time."""
        status = getattr(exc, "status", None)
        if self._stop.is_set():
            self._settle(
                job,
                DeliveryError(
                    f"shut down before delivery: {exc}", reason="shutdown", status=status
                ),
            )
            return
        if self._draining:
            delay = min(delay, DRAIN_RETRY_DELAY)
        now = self._clock()
        deadline = min(job.deadline, self._hard_deadline)
        if now + delay > deadline:
            reason = "shutdown" if deadline == self._hard_deadline else "retries_exhausted"
            attempts = f"{job.attempt} attempt" + ("" if job.attempt == 1 else "s")
            started = job.deadline - self._settings.max_retry_time
            self._settle(
                job,
                DeliveryError(
                    f"gave up after {attempts} in {now - started:.1f}s: {exc}",
                    reason=reason,
                    status=status,
                ),
            )
            return
        with self._lock:
            if job.done:
                return
            self._counters.add("retried")
            first = self._retry.push(now + delay, job)
        self._log.log(
            logging.WARNING,
            "retry",
            "sending %s failed (%s); retrying",
            events_text(len(job.batch)),
            exc,
        )
        if first:
            self._buffer.wake.set()  # a waiting thread times its wait by the soonest retry

    def _export_failed(self, job: Job, exc: Exception) -> None:
        """An unexpected failure: an event that cannot be encoded, or a bug."""
        split = split_unencodable(job.batch)
        if split is None:
            # A bug or an unexpected failure in the exporter: the events
            # keep their identifiers, so trying again is safe.
            report_internal_error(exc)
            self._reschedule(job, self._pacer.retry_delay(job.attempt), exc)
            return
        self._replace(job, split)

    def _replace(self, job: Job, split: Split) -> None:
        """Settle the refused events of *job*, and put its parts in its place, due now.

        Each part keeps its events' identifiers and gets a new Idempotency-Key
        (its request body differs); it keeps the batch's number (flushes wait
        for every part) and its retry deadline.
        """
        parts, refusals = split
        batch = job.batch
        refused = [(batch.subset(indices), error) for indices, error in refusals]
        for events, error in refused:
            # Reported before the flushes waiting on the batch can be released.
            self._buffer.settled(events, error)
            self._report(events, error)
        now = self._clock()
        with self._lock:
            if job.done:
                return
            for part in self._ledger.replace(job, [batch.subset(i) for i in parts]):
                self._retry.push(now, part)
            self._counters.add("failed_rejected", sum(len(events) for events, _ in refused))
        if parts:
            self._buffer.wake.set()

    def _settle(self, job: Job, error: Optional[DeliveryError]) -> None:
        """Count a batch's final outcome exactly once, and release flushes waiting on it.

        Reported (``on_delivery_error``) before the flushes waiting on it are
        released: a flush that returns True has seen its events settled.
        """
        count = len(job.batch)
        # A spool acknowledges, buries or takes back the batch's rows first
        # (outside the lock: it writes to disk); once per event, whoever asks.
        kept = self._buffer.settled(job.batch, error)
        if error is not None and not kept:
            with self._lock:
                if job.done:
                    return  # shutdown() already gave it up and reported it
            self._report(job.batch, error)
        with self._lock:
            if job.done:
                return  # shutdown() already gave it up and counted it
            if kept:
                pass  # back in the spool to wait: counted there, not a failure
            elif error is None:
                self._counters.add("sent", count)
            elif error.reason == "shutdown":
                self._counters.add("abandoned_shutdown", count)
            elif error.reason == "retries_exhausted":
                self._counters.add("failed_retries_exhausted", count)
            else:
                self._counters.add("failed_rejected", count)
            self._ledger.close(job)

    def _report(self, batch: EventBatch, error: DeliveryError) -> None:
        """Log and hand *batch* to ``on_delivery_error``; never fails on the events."""
        self._log.log(
            logging.ERROR,
            "failed:" + error.reason,
            "%s not delivered: %s",
            events_text(len(batch)),
            error,
        )
        callback = self._settings.on_delivery_error
        if callback is not None:
            try:
                callback(batch.reportable(), error)
            except Exception as exc:
                self._log.log(logging.ERROR, "callback", "on_delivery_error raised %r", exc)

    # -- caller-side entry points ---------------------------------------------------------

    def flush_on_caller(self, deadline: float = float("inf")) -> bool:
        """Send everything waiting on this thread (``sync_mode``, or no thread possible)."""
        buffer = self._buffer
        pause = threading.Event()
        try:
            while buffer.waiting() or self._retry:
                now = self._clock()
                if now >= deadline:
                    return False
                if not self._send_next(True, self._never):
                    # Only retries wait (or too many do to take more): until
                    # the soonest is due.
                    until = min(self._retry.next_at(), deadline, now + 1.0)
                    pause.wait(max(0.0, until - now))
            return True
        finally:
            if self._evictions is not None:
                self._evictions.report_all()

    def flush(self, timeout: Optional[float]) -> bool:
        """True once every event recorded before the call is settled."""
        deadline = float("inf") if timeout is None else self._clock() + timeout
        point = self._buffer.flush_point()
        marker = self._buffer.add_marker()
        if not (self._settings.sync_mode or self._closing):
            self.ensure_started()
        thread = self._thread
        if thread is None or not thread.is_alive():
            self.flush_on_caller(deadline)
        if not marker.done.wait(timeout):
            return False
        if point is not None:
            # A spool: every row up to the flush's point must be gone too (a batch
            # out of retry time went back to wait, another process may hold some).
            while self._buffer.pending_upto(point):
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                again = self._buffer.add_marker()  # takes what is left, batch or not
                if thread is None or not thread.is_alive():
                    self.flush_on_caller(deadline)
                again.done.wait(min(remaining, 0.05))
        if self._evictions is None:
            return True
        # Evicted events are settled once on_delivery_error has them: those
        # evicted so far (before the marker was reached, too) are in the
        # reporter's hands, or its thread is reporting them now.
        return self._evictions.settle(None if timeout is None else deadline - self._clock())

    def shutdown(self, timeout: float) -> bool:
        """Drain within *timeout*, then stop the threads and the exporter.

        Batches waiting to retry go again at once, and keep going until the
        deadline. Whatever could not be delivered in time is counted as
        dropped at shutdown and handed to ``on_delivery_error``.
        """
        with self._start_lock:
            self._closing = True
        start = self._clock()
        deadline = start + timeout
        self._hard_deadline = deadline
        self._drain()
        thread = self._thread
        if thread is not None and thread.is_alive():
            # Keep a moment at the end to abort requests still in flight.
            done = self.flush(max(0.0, timeout - SHUTDOWN_GRACE if timeout > 0.2 else timeout))
        else:
            done = self.flush_on_caller(deadline)
        self._stop.set()
        self._pacer.wake()
        self._buffer.wake.set_all()
        # Closing the exporter aborts requests still in flight (a hanging or
        # trickling server); the threads then settle their batches, so that
        # what they report is reported before we return.
        self._close_exporter()
        threads = [t for t in (thread, *self._workers) if t is not None]
        grace = max(deadline, self._clock() + 0.01)
        for worker in threads:
            worker.join(max(0.0, grace - self._clock()))
        self._abandon_inflight()
        self._drop_leftovers()
        return done and not self._buffer.waiting()

    def _drain(self) -> None:
        """Shutdown begins: every batch waiting to retry is due now, the pace is lifted."""
        self._draining = True
        self._pacer.drain()
        self._retry_now()
        self._buffer.wake.set_all()

    def _retry_now(self) -> None:
        """Every batch waiting to retry is due now (in its order); threads go at the pace."""
        with self._lock:
            now = self._clock()
            self._retry.all_due(now)
        self._buffer.wake.set()

    def _close_exporter(self) -> None:
        try:
            self._exporter.shutdown()
        except Exception as exc:
            report_internal_error(exc)

    def _abandon_inflight(self) -> None:
        """Batches in flight past the deadline (a hanging server), or waiting: give them up."""
        with self._lock:
            abandoned = self._ledger.abandon()
            self._retry.clear()
        error = DeliveryError("in flight at shutdown", reason="shutdown")
        abandoned = [job for job in abandoned if not self._buffer.settled(job.batch, error)]
        with self._lock:
            self._counters.add("abandoned_shutdown", sum(len(job.batch) for job in abandoned))
        for job in abandoned:
            self._report(
                job.batch,
                DeliveryError(
                    f"{events_text(len(job.batch))} in flight at shutdown, maybe not delivered",
                    reason="shutdown",
                ),
            )

    def _drop_leftovers(self) -> None:
        left, markers = self._buffer.leftovers()
        if left:
            with self._lock:
                self._counters.add("abandoned_shutdown", len(left))
            self._report(
                EventBatch(left, self._keys_for),
                DeliveryError(
                    f"{events_text(len(left))} could not be delivered before shutdown",
                    reason="shutdown",
                ),
            )
        for marker in markers:
            marker.done.set()
        if self._evictions is not None:
            self._evictions.stop(max(0.0, self._hard_deadline - self._clock()))

    def after_fork_in_child(self) -> None:
        self._reset_state()
        if self._evictions is not None:
            self._evictions.reset()
