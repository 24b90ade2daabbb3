"""Sending full batches from the app's own asyncio event loop.

In an asyncio app (FastAPI, Starlette), the delivery threads share the GIL
with the event loop: every batch they send makes the loop's thread hand the
GIL over and wait to get it back, several times, and on a busy worker that
costs more than the work itself. So while an event loop is attached
(:class:`~meterstream.integrations.asgi.MeterstreamMiddleware` attaches the
one serving requests), full batches go out from that loop: taken when the
record that fills one asks for it, encoded, and posted over asyncio streams.

Only the common case happens here: a full batch, a session token already
open and fresh, and Stripe's 200. Everything else goes to the delivery
threads, the batch keeping its number and its batch id: opening or rotating
sessions, the answers other than 200 (which the threads sort, wait and retry
as for any batch), transport errors, the loop closing or being blocked by a
caller of ``flush()``, shutdown. The threads also still send partial
batches every ``flush_interval``, flush markers, and everything when no loop
is attached. Each batch is settled once, by whichever side sees it through.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING, Callable, Optional

from ._exporters._http11 import TransportError
from ._exporters.base import RetryableExportError
from ._internal import report_internal_error
from ._otel import export_span

if TYPE_CHECKING:
    from ._delivery import Delivery
    from ._events import EventBatch
    from ._exporters.stripe import StripeExporter

__all__ = ["LoopSender"]

#: Transport failures in a row after which the loop leaves sending to the threads ...
MAX_FAILURES = 3
#: ... for this many seconds.
REST_SECONDS = 60


class LoopSender:
    """Sends full batches from one running event loop, for one client.

    Made on the loop's thread. It is also what the client's record path
    signals when a batch is full (:meth:`is_set`, :meth:`set`), in place of
    the delivery threads' wake-up, for as long as it is attached.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        delivery: Delivery,
        exporter: StripeExporter,
        max_inflight: int,
        on_detach: Callable[[LoopSender], None],
    ) -> None:
        self.loop = loop
        self.thread_id = threading.get_ident()
        self._delivery = delivery
        self._exporter = exporter
        self._http = exporter.loop_http()
        self._max_inflight = max_inflight
        self._on_detach = on_detach
        self._flag = False
        self._inflight = 0
        #: Batches this loop is sending, by number: whoever pops one hands it on.
        self._owned: dict[int, tuple[EventBatch, str]] = {}
        self._failures = 0
        self._resume_at = 0.0
        self.closed = False
        #: Batches settled as sent from the loop (for tests and the docs).
        self.sent_batches = 0
        # Waits for the loop to end (asyncio.run and servers cancel what is
        # left): then what the loop holds goes to the threads, and its
        # connections are closed on the loop, as asyncio wants.
        self._watcher = loop.create_task(self._watch())

    async def _watch(self) -> None:
        try:
            await self.loop.create_future()
        finally:
            self.detach()
            self.reclaim()
            self._http.close()

    @property
    def sending(self) -> bool:
        """Whether full batches are this loop's to send (else the threads')."""
        return not self.closed and (not self._resume_at or time.monotonic() >= self._resume_at)

    # -- the record path's signal --------------------------------------------------

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        """A full batch waits: take it on the loop (from any thread)."""
        self._flag = True
        try:
            if threading.get_ident() == self.thread_id:
                self.loop.call_soon(self._take)
            else:
                self.loop.call_soon_threadsafe(self._take)
        except RuntimeError:  # the loop is closed
            self.detach()

    # -- on the loop ---------------------------------------------------------------

    def _take(self) -> None:
        self._flag = False
        if self._resume_at and time.monotonic() < self._resume_at:
            self._delivery.wake_threads()  # resting after failures: the threads send
            return
        while not self.closed:
            if self._inflight >= self._max_inflight:
                # Taken again when a send ends; until then the record path
                # need not ask.
                self._flag = True
                return
            taken = self._delivery.take_full_batch()
            if taken is None:
                return
            seq, batch = taken
            self._inflight += 1
            self._owned[seq] = (batch, self._delivery.new_batch_id())
            self.loop.create_task(self._send(seq, batch))

    async def _send(self, seq: int, batch: EventBatch) -> None:
        error: Optional[Exception] = None
        try:
            error = await self._post(seq, batch)
        except asyncio.CancelledError:
            raise  # the loop is closing: the threads send it (finally)
        except Exception as exc:  # a bug: the threads send the batch
            report_internal_error(exc)
            self._transport_failed(exc)
        finally:
            self._inflight -= 1
            self._hand_on(seq, error)
            if not self.closed and not self.loop.is_closed():
                self._take()

    async def _post(self, seq: int, batch: EventBatch) -> Optional[Exception]:
        """Send *seq*; None once settled or handed on, else the error to hand on with."""
        owned = self._owned.get(seq)
        if owned is None:
            return None
        batch_id = owned[1]
        request = self._exporter.loop_request(batch, batch_id)
        if request is None:
            return None  # no fresh session: the threads open one
        token, path, body, headers = request
        try:
            with export_span(batch, 1):
                try:
                    reply = await self._http.post(path, body, headers)
                except TransportError as exc:
                    self._transport_failed(exc)
                    raise RetryableExportError(f"sending meter events failed: {exc}") from None
                self._failures = 0
                if reply.status != 200:
                    self._exporter.refused(batch, token, reply)  # raises
        except Exception as exc:
            return exc
        if self._owned.pop(seq, None) is not None:
            self.sent_batches += 1
        # Settled even if the batch was handed on meanwhile: Stripe has it,
        # and the threads' copy (same identifiers) settles as a no-op.
        self._delivery.settle(seq, batch, None)
        return None

    def _transport_failed(self, exc: Exception) -> None:
        self._failures += 1
        if self._failures >= MAX_FAILURES:
            self._delivery.log(
                logging.WARNING,
                "loop",
                "meterstream: sending from the event loop failed %d times in a row (%s); "
                "the delivery threads send for the next %d seconds",
                self._failures,
                exc,
                REST_SECONDS,
            )
            self._failures = 0
            self._resume_at = time.monotonic() + REST_SECONDS

    def _hand_on(self, seq: int, error: Optional[Exception]) -> None:
        owned = self._owned.pop(seq, None)
        if owned is not None:
            self._delivery.hand_off(seq, owned[0], owned[1], error)

    # -- from any thread -------------------------------------------------------------

    def reclaim(self) -> None:
        """Hand every batch this loop owns to the threads (the loop cannot finish them)."""
        for seq in list(self._owned):
            self._hand_on(seq, None)

    def before_blocking(self) -> None:
        """``flush()`` or ``shutdown()`` is about to block: if on the loop's thread,
        nothing this loop holds could finish, so the threads take it."""
        if threading.get_ident() == self.thread_id:
            self.reclaim()

    def check(self) -> None:
        """From the flusher's tick: a loop closed or no longer running gives up
        what it holds (a loop run again later attaches again)."""
        if self.loop.is_closed() or not self.loop.is_running():
            self.detach()
            self.reclaim()

    def detach(self) -> None:
        """Stop sending from the loop; the threads send everything from now on."""
        if self.closed:
            return
        self.closed = True
        self._on_detach(self)
        if threading.get_ident() == self.thread_id:
            self.reclaim()
            self._watcher.cancel()
            return
        if self.loop.is_closed():
            self.reclaim()
            return
        try:  # the watcher closes the loop's connections, on the loop
            self.loop.call_soon_threadsafe(self._watcher.cancel)
        except RuntimeError:  # closed meanwhile
            self.reclaim()
