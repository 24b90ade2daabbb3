"""``EventQueue``: what the record path puts into and delivery takes from.

Two kinds implement it: the in-memory :class:`~meterstream._delivery.buffer.Buffer`
(the default) and the spool's :class:`~meterstream._spool.sink.SpoolBuffer`
(``spool_path``), whose events wait in SQLite and only flush markers in
memory. The client records into one and hands the same one to
:class:`~meterstream._delivery.delivery.Delivery`; neither side knows which.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Optional, Protocol

from meterstream._delivery.buffer import FlushMarker, Wake
from meterstream._delivery.counters import Counters
from meterstream._record.events import EventBatch, RawEvent
from meterstream.errors import DeliveryError

__all__ = ["EventQueue"]


class EventQueue(Protocol):
    """A FIFO of accepted events between the record path and delivery.

    The record path calls :meth:`put` only; delivery takes batches (one
    taker at a time, under its lock), says how each settled, and asks for
    flush markers. Both sides count into the client's :class:`Counters`.
    """

    #: Where drops, evictions and spooled events are counted (the client's).
    counters: Counters
    #: Events a batch takes: that many waiting wake a delivery thread.
    batch_size: int
    #: What the delivery threads wait on: set when a full batch waits, a
    #: flush was asked for, or a retry is due.
    wake: Wake
    #: Events ``drop_oldest`` evicted, waiting for ``on_delivery_error``;
    #: None when nobody listens (the delivery's eviction reporter sets both).
    evicted: Optional[deque[RawEvent]]
    #: Called after each eviction with how many wait in :attr:`evicted`.
    on_evicted: Optional[Callable[[int], None]]

    # -- the record path ----------------------------------------------------------------

    def put(self, item: RawEvent) -> bool:
        """Accept one event; False when the overflow policy dropped it (counted)."""
        ...

    # -- delivery ---------------------------------------------------------------------------

    def waiting(self) -> bool:
        """Anything to take: an event or a flush marker."""
        ...

    def __len__(self) -> int:
        """Events waiting to be taken by this process (a cheap count, markers excluded)."""
        ...

    @property
    def has_markers(self) -> bool:
        """A flush marker waits to be taken."""
        ...

    def pending(self) -> int:
        """Events waiting, as ``stats()["queued"]`` reports them (a spool: every process's)."""
        ...

    def take(self, limit: int) -> tuple[list[RawEvent], Optional[FlushMarker]]:
        """Remove up to *limit* of the oldest events, and the flush marker reached, if any.

        The caller sets the marker once the events taken with it are settled.
        """
        ...

    def tick(self) -> None:
        """Called on each delivery wake (a spool renews its claims here)."""
        ...

    def settled(self, batch: EventBatch, error: Optional[DeliveryError]) -> bool:
        """How *batch* settled (*error* None: accepted); True when its events
        went back to wait here instead, which is neither a success nor a failure."""
        ...

    def add_marker(self) -> FlushMarker:
        """Queue a flush marker behind every event accepted so far."""
        ...

    def flush_point(self) -> Optional[int]:
        """Where a flush must also see everything settled (a spool's newest row), or None."""
        ...

    def pending_upto(self, point: int) -> int:
        """Events up to *point* (from :meth:`flush_point`) still waiting, anyone's."""
        ...

    def leftovers(self) -> tuple[list[RawEvent], list[FlushMarker]]:
        """At shutdown: the events nobody will send now, and the flush markers."""
        ...

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks, nothing of the parent's events in memory."""
        ...
