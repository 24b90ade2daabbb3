"""Cancellations: a small durable-or-not queue and the thread that sends it.

Cancellations are rare, so they do not share the record path's buffer or
batches: each is one request (``Exporter.cancel``), on a thread of its own
started at the first one, retried with the delivery's rules (backoff with
jitter from ``retry_initial_delay`` to ``retry_max_delay``, a server's
``Retry-After``, ``max_retry_time``), one OpenTelemetry span per attempt.

A cancellation is sent only once its event is no longer in flight (*busy*
says so): it always reaches the receiver after the event it cancels. Where
it waits is a :class:`CancelStore`: in memory without a spool, the spool's
``cancellations`` table with one (durable: a process that dies leaves its
cancellations to the next one; without ``max_retry_time`` as a limit, as the
spool keeps events through outages of any length).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Protocol

from meterstream._config.settings import Settings
from meterstream._delivery.pacing import MAX_RETRY_AFTER, Backoff
from meterstream._exporters.base import Exporter, RetryableExportError
from meterstream._internal import RateLimitedLog, report_internal_error
from meterstream._otel import cancel_span
from meterstream.errors import DeliveryError

__all__ = ["CancelStore", "Canceller", "MemoryCancelStore", "PendingCancel"]

#: How often a cancellation whose event is still in flight looks again.
BUSY_RECHECK = 0.05
#: How long a process that took a cancellation to send holds it before another
#: process sharing the spool may (a crash mid-request): a second request would
#: carry the same idempotency key, which Stripe answers without cancelling twice.
SEND_HOLD = 5.0


class PendingCancel(NamedTuple):
    identifier: str
    event_name: str
    recorded_at: float
    attempts: int


class CancelStore(Protocol):
    """Where cancellations wait to be sent (``Spool`` is the durable one)."""

    #: Whether cancellations outlive the process (then they are kept past
    #: ``max_retry_time``, as the spool keeps events).
    durable: bool

    def add_cancellation(self, identifier: str, event_name: str, state: str) -> bool: ...

    def due_cancellations(self, limit: int) -> list[PendingCancel]: ...

    def postpone_cancellation(self, identifier: str, delay: float) -> None: ...

    def take_cancellation(self, identifier: str, hold: float) -> bool: ...

    def settle_cancellation(self, identifier: str, state: str, message: Optional[str]) -> bool: ...

    def cancellations_pending(self) -> int: ...

    def cancellation_state(self, identifier: str) -> Optional[str]: ...


@dataclass
class _Row:
    event_name: str
    recorded_at: float
    attempts: int = 0
    not_before: float = 0.0
    state: str = "pending"


class MemoryCancelStore:
    """Cancellations of a client without a spool: lost with the process."""

    durable = False

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: dict[str, _Row] = {}

    def add_cancellation(self, identifier: str, event_name: str, state: str) -> bool:
        with self._lock:
            if identifier in self._rows:
                return False
            self._rows[identifier] = _Row(event_name, self._clock(), state=state)
            return True

    def due_cancellations(self, limit: int) -> list[PendingCancel]:
        now = self._clock()
        with self._lock:
            due = [
                PendingCancel(ident, row.event_name, row.recorded_at, row.attempts)
                for ident, row in self._rows.items()
                if row.state == "pending" and row.not_before <= now
            ]
        return due[:limit]

    def postpone_cancellation(self, identifier: str, delay: float) -> None:
        with self._lock:
            row = self._rows.get(identifier)
            if row is not None:
                row.attempts += 1
                row.not_before = self._clock() + delay

    def take_cancellation(self, identifier: str, hold: float) -> bool:
        with self._lock:
            row = self._rows.get(identifier)
            return row is not None and row.state == "pending"

    def settle_cancellation(self, identifier: str, state: str, message: Optional[str]) -> bool:
        with self._lock:
            row = self._rows.get(identifier)
            if row is None or row.state != "pending":
                return False
            row.state = state
            return True

    def cancellations_pending(self) -> int:
        with self._lock:
            return sum(1 for row in self._rows.values() if row.state == "pending")

    def cancellation_state(self, identifier: str) -> Optional[str]:
        with self._lock:
            row = self._rows.get(identifier)
            return None if row is None else row.state

    def reset(self) -> None:
        """A forked child: the parent sends what it queued."""
        self._lock = threading.Lock()
        self._rows = {}


class Canceller:
    """Sends the cancellations of one client, in the order recorded.

    Args:
        exporter: sends each cancellation (``Exporter.cancel``).
        settings: the retry settings and ``on_delivery_error``.
        store: where cancellations wait.
        busy: whether an identifier's event is still in flight (taken to be
            sent, not yet settled): its cancellation waits until it is not.
        log: the client's rate-limited log.
        withdraw: removes an identifier's event if it is waiting to be sent
            again (it failed meanwhile): then nothing need be sent.
    """

    def __init__(
        self,
        exporter: Exporter,
        settings: Settings,
        store: CancelStore,
        busy: Callable[[str], bool],
        log: RateLimitedLog,
        clock: Callable[[], float] = time.time,
        withdraw: Optional[Callable[[str], bool]] = None,
    ) -> None:
        self._exporter = exporter
        self._withdraw = withdraw
        self._settings = settings
        self._store = store
        self._busy = busy
        self._log = log
        self._clock = clock
        self._backoff = Backoff(settings.retry_initial_delay, settings.retry_max_delay)
        self._counts = {"cancels_sent": 0, "cancels_failed": 0, "cancels_withdrawn": 0}
        self._reset_state()

    def _reset_state(self) -> None:
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        #: First attempt of each cancellation in this process (for max_retry_time).
        self._first: dict[str, float] = {}

    # -- the caller's side -------------------------------------------------------------

    def submit(self, identifier: str, event_name: str) -> bool:
        """Queue a cancellation; False when one for *identifier* was queued before."""
        added = self._store.add_cancellation(identifier, event_name, "pending")
        self.start()
        return added

    def start(self) -> None:
        """Start the thread (once), when there is something to send or resume."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                self._wake.set()
                return
            thread = threading.Thread(target=self._run, name="meterstream-cancel", daemon=True)
            try:
                thread.start()
            except RuntimeError:
                return  # interpreter shutting down: flush() sends on its caller
            self._thread = thread
        self._wake.set()

    def counters(self) -> dict[str, int]:
        with self._lock:
            counts = dict(self._counts)
        try:
            counts["cancels_pending"] = self._store.cancellations_pending()
        except Exception as exc:  # a spool that cannot be read: say 0, log it
            report_internal_error(exc)
            counts["cancels_pending"] = 0
        return counts

    def flush(self, timeout: Optional[float]) -> bool:
        """True once no cancellation waits to be sent (or *timeout* passed)."""
        deadline = float("inf") if timeout is None else time.monotonic() + timeout
        if self._store.cancellations_pending() and self._thread is None:
            self.start()
        while self._store.cancellations_pending():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            thread = self._thread
            if thread is None or not thread.is_alive():
                self.send_due()  # no thread possible: on the caller's
                if self._store.cancellations_pending():
                    self._stop.wait(min(remaining, BUSY_RECHECK))
                continue
            self._wake.set()
            with self._settled:
                self._settled.wait(min(remaining, BUSY_RECHECK))
        return True

    def shutdown(self, timeout: float) -> bool:
        """Send what is due within *timeout*, then stop the thread."""
        done = self.flush(timeout)
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, min(timeout, 1.0)))
        return done

    def after_fork_in_child(self) -> None:
        self._reset_state()

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.send_due()
            except Exception as exc:  # the thread must outlive any bug
                report_internal_error(exc)
                self._log.log(logging.ERROR, "cancel", "cancellation thread error: %r", exc)
                wait = 1.0
            self._wake.wait(wait)
            self._wake.clear()

    def send_due(self) -> float:
        """Send every cancellation that is due; returns how long to wait for the next."""
        wait = 1.0
        for pending in self._store.due_cancellations(100):
            if self._stop.is_set():
                break
            if self._busy(pending.identifier):
                self._store.postpone_cancellation(pending.identifier, BUSY_RECHECK)
                wait = min(wait, BUSY_RECHECK)
                continue
            if self._withdraw is not None and self._withdraw(pending.identifier):
                self._done(pending.identifier, "withdrawn", None, "cancels_withdrawn")
                continue
            if not self._store.take_cancellation(pending.identifier, SEND_HOLD):
                continue  # another process sharing the spool is sending it
            delay = self._attempt(pending)
            if delay is not None:
                wait = min(wait, delay)
        return wait

    def _attempt(self, pending: PendingCancel) -> Optional[float]:
        """Send one cancellation; the delay before its retry, or None when settled."""
        ident, name = pending.identifier, pending.event_name
        now = time.monotonic()
        first = self._first.setdefault(ident, now)
        attempt = pending.attempts + 1
        try:
            with cancel_span(name, ident, attempt):
                self._exporter.cancel(name, ident, request_id=ident)
        except RetryableExportError as exc:
            delay = exc.retry_after
            if delay is None or delay <= 0:
                delay = self._backoff.delay(attempt)
            delay = min(delay, MAX_RETRY_AFTER)
            if not self._store.durable and now + delay - first > self._settings.max_retry_time:
                attempts = f"{attempt} attempt" + ("" if attempt == 1 else "s")
                self._failed(
                    pending,
                    DeliveryError(
                        f"cancelling {ident!r} gave up after {attempts}: {exc}",
                        reason="retries_exhausted",
                        status=exc.status,
                    ),
                )
                return None
            self._log.log(
                logging.WARNING, "cancel:retry", "cancelling %r failed (%s); retrying", ident, exc
            )
            self._store.postpone_cancellation(ident, delay)
            return delay
        except DeliveryError as exc:
            self._failed(pending, exc)
            return None
        except Exception as exc:  # a bug in the exporter: try again later
            report_internal_error(exc)
            delay = self._backoff.delay(attempt)
            self._store.postpone_cancellation(ident, delay)
            return delay
        self._done(ident, "sent", None, "cancels_sent")
        return None

    def _failed(self, pending: PendingCancel, error: DeliveryError) -> None:
        self._log.log(logging.ERROR, "cancel:failed", "cancellation not done: %s", error)
        if self._done(pending.identifier, "failed", str(error), "cancels_failed"):
            callback = self._settings.on_delivery_error
            if callback is not None:
                cancellation = {
                    "type": "cancel",
                    "event_name": pending.event_name,
                    "identifier": pending.identifier,
                }
                try:
                    callback([cancellation], error)
                except Exception as exc:
                    self._log.log(logging.ERROR, "callback", "on_delivery_error raised %r", exc)

    def _done(self, ident: str, state: str, message: Optional[str], counter: str) -> bool:
        settled = self._store.settle_cancellation(ident, state, message)
        with self._settled:
            self._first.pop(ident, None)
            if settled:
                self._counts[counter] += 1
            self._settled.notify_all()
        return settled
