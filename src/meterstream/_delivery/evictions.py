"""Handing the events ``drop_oldest`` evicts to ``on_delivery_error``, apart from delivery.

Evictions happen when delivery cannot keep up, often because it is stuck
(an outage, a hanging server): a report that waited for a delivery thread
would wait as long. A ``meterstream-reporter`` thread of its own hands them
over as they happen. The evicted events wait in a deque; when the reporter
falls behind (the callback is slower than the evictions) and
:data:`EVICTED_CHUNK` wait, the recording thread that evicted reports them
itself: memory stays bounded, and no eviction is ever left out.

One report at a time: whoever reports holds a lock from taking a chunk
until the callback returns, so the callback sees the evictions in order,
and ``flush()`` (:meth:`EvictionReporter.settle`) can wait for a report in
progress on another thread: an evicted event is settled (as a failure) only
once ``on_delivery_error`` has had it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, Optional

from meterstream._delivery.event_queue import EventQueue
from meterstream._internal import report_internal_error
from meterstream._record.events import EventBatch
from meterstream.errors import DeliveryError

__all__ = ["EVICTED_CHUNK", "EvictionReporter"]

#: Evictions handed to on_delivery_error in one call, and how many may wait.
EVICTED_CHUNK = 10_000


class EvictionReporter:
    """Reports what *buffer* evicts through *report*, on its own thread.

    Args:
        buffer: the buffer whose ``drop_oldest`` evictions to report.
        report: hands a batch and its error to ``on_delivery_error`` (and logs).
        keys_for: the payload keys of an event name, to show the events.
    """

    def __init__(
        self,
        buffer: EventQueue,
        report: Callable[[EventBatch, DeliveryError], None],
        keys_for: Callable[[str], tuple[str, str]],
    ) -> None:
        self._buffer = buffer
        self._report = report
        self._keys_for = keys_for
        buffer.evicted = deque()
        buffer.on_evicted = self._on_evicted
        self.reset()

    def reset(self) -> None:
        """Fresh thread state: at start and in a forked child."""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        #: Held from taking a chunk until its report returns. Reentrant: a
        #: callback that records (and evicts) on the reporting thread.
        self._reporting = threading.RLock()

    def start(self) -> None:
        """Start the reporter thread (RuntimeError while the interpreter shuts down)."""
        thread = threading.Thread(target=self._run, name="meterstream-reporter", daemon=True)
        thread.start()
        self._thread = thread

    def stop(self, timeout: float) -> None:
        """End the thread (within *timeout*), then report what is left here.

        A thread still in a callback past *timeout* keeps what is left: it
        reports every chunk waiting before it ends.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.0, timeout))
        self.settle(deadline - time.monotonic())

    def _on_evicted(self, waiting: int) -> None:
        """Called on the recording thread after each eviction (never per plain record)."""
        if waiting >= EVICTED_CHUNK:
            self.report_all()  # the reporter is behind: this thread reports
        elif not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        wake = self._wake
        while not self._stop.is_set():
            wake.wait()
            wake.clear()
            try:
                self.report_all()
            except Exception as exc:  # the thread must outlive any bug
                report_internal_error(exc)

    def report_all(self) -> None:
        """Hand every eviction waiting to ``on_delivery_error`` (counted already)."""
        evicted = self._buffer.evicted
        if not evicted:
            return
        while self._report_chunk():
            pass

    def settle(self, timeout: Optional[float]) -> bool:
        """Report what waits, after any report in progress on another thread.

        Returns:
            True once every eviction made before the call reached
            ``on_delivery_error``; False when a report in progress outlasted
            *timeout* (seconds; None waits as long as it takes).
        """
        reporting = self._reporting
        if not reporting.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return False
        try:
            self.report_all()
        finally:
            reporting.release()
        return True

    def _report_chunk(self) -> bool:
        """Take and report up to :data:`EVICTED_CHUNK` evictions; False when none waited."""
        with self._reporting:
            evicted = self._buffer.evicted
            if evicted is None:
                return False
            raw: list[tuple[Any, ...]] = []
            try:  # a recording thread may be adding to it meanwhile
                while len(raw) < EVICTED_CHUNK:
                    raw.append(evicted.popleft())
            except IndexError:
                pass
            if not raw:
                return False
            count = f"{len(raw)} event" + ("" if len(raw) == 1 else "s")
            self._report(
                EventBatch(raw, self._keys_for),
                DeliveryError(
                    f"{count} evicted from the full buffer (overflow=drop_oldest)",
                    reason="queue_full",
                ),
            )
        return True
