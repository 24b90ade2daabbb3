"""The record path's sink and the delivery's source when ``spool_path`` is set.

A :class:`SpoolBuffer` is the :class:`~meterstream._delivery.event_queue.EventQueue`
that stands where the in-memory :class:`~meterstream._delivery.buffer.Buffer`
stands: ``put`` is one write into this process's journal, ``take`` reads the
journal in order (then claims the oldest events of the SQLite file nobody
holds: aggregated ones, and those a previous release left), and delivery
tells it how each batch settled
(:meth:`settled`): accepted events leave the spool, refused ones go to its
dead letters, and the rest (out of retry time, in flight at shutdown) go back
to wait for a later attempt, by this process or another. Only flush markers
live in memory, so memory stays bounded whatever the spool holds.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Callable, Optional

from meterstream._delivery.buffer import FlushMarker, Wake
from meterstream._delivery.counters import Counters
from meterstream._internal import RateLimitedLog, report_internal_error
from meterstream._record.events import EventBatch, RawEvent
from meterstream._spool.journal import JournalError, JournalFull
from meterstream._spool.spool import DeadLetter, Spool
from meterstream.errors import DeliveryError

__all__ = ["SpoolBuffer"]

#: How long a batch out of retry time waits in the spool before it is tried again.
RETURN_DELAY = 5.0
#: How often the claims this process holds are renewed, and the spool looked at.
TICK = 5.0


class SpoolBuffer:
    """An :class:`~meterstream._delivery.event_queue.EventQueue` whose events
    live in a :class:`Spool`.

    Args:
        spool: where the events wait.
        overflow: what a full spool (``spool_max_bytes``) does to a new event:
            ``drop_newest``, ``drop_oldest`` or ``block``.
        block_timeout: how long ``block`` waits for room.
        batch_size: events put since the last claim that wake a delivery thread.
        counters: the client's counters.
        log: where drops are logged (rate-limited).
        raise_errors: a failed insert raises ``DeliveryError`` into the record call.
    """

    def __init__(
        self,
        spool: Spool,
        overflow: str = "drop_newest",
        block_timeout: float = 1.0,
        batch_size: int = 100,
        counters: Optional[Counters] = None,
        *,
        log: Optional[RateLimitedLog] = None,
        raise_errors: bool = False,
    ) -> None:
        self.spool = spool
        self.batch_size = batch_size
        self.counters = counters if counters is not None else Counters()
        self.wake = Wake()
        self.evicted: Optional[deque[RawEvent]] = None
        self.on_evicted: Optional[Callable[[int], None]] = None
        self._overflow = overflow
        self._block_timeout = block_timeout
        self._log = log or RateLimitedLog()
        self._raise = raise_errors
        #: flush() markers not yet taken, oldest first: all this keeps in memory.
        self._markers: deque[FlushMarker] = deque()
        #: Events to claim from the SQLite file (aggregated ones, and a tick's
        #: guess that another process left some): with the journal's unread
        #: frames, a cheap "is there work"; the flusher's tick looks at the
        #: spool itself, for other processes' events.
        self._fresh = 0
        self._claimed: dict[int, int] = {}  # id(raw event) -> its row in the spool
        self._claimed_lock = threading.Lock()
        self._next_tick = 0.0
        #: The SQLite file may hold events to claim (checked on open and each tick).
        self._rows = True
        self._append = spool.journal.append
        #: Write one event to the journal; False when it was dropped (counted,
        #: logged). The journal's writer (one store, no call): anything it
        #: does not take on its own comes to :meth:`put_checked`.
        self.put: Callable[[RawEvent], bool] = spool.journal.writer(
            self.put_checked, self.wake, batch_size
        )

    # -- the record path ------------------------------------------------------------

    def put_checked(self, item: RawEvent) -> bool:
        """Write one event to the journal, a new segment and the overflow policy
        included; False when it was dropped (counted, logged).

        Counted as spooled by the journal itself (``journal.written``): no
        counter lock on the record path.
        """
        try:
            try:
                self._append(item)
            except JournalFull:
                if not self._make_room():
                    raise
                self._append(item)
        except JournalFull:
            self._drop("spool_full", "the spool is full (spool_max_bytes): events are dropped")
            return False
        except JournalError as exc:
            self._drop(
                exc.reason, "the spool's journal refused an event (%s): events are dropped", exc
            )
            if self._raise:
                raise DeliveryError(f"spool_path: {exc}", reason="spool") from None
            return False
        except Exception as exc:  # never into the metered call (unless raise_errors)
            if not isinstance(exc, (sqlite3.Error, OSError, ValueError)):
                report_internal_error(exc)  # not the disk's nor the event's doing: ours
            self._drop("spool_error", "the spool refused an event (%s): events are dropped", exc)
            if self._raise:
                raise DeliveryError(f"spool_path: {exc}", reason="spool") from None
            return False
        if self.spool.journal.unread() >= self.batch_size and not self.wake._flag:
            self.wake.set()
        return True

    def _make_room(self) -> bool:
        """The spool is full: apply the overflow policy. True when there is room now.

        The history of accepted events gives way first: pending events matter more.
        """
        if self.spool.prune_history(keep_bytes=self.spool.max_bytes * 9 // 10):
            self.spool.refresh_full()
            if not self.spool.full and self.spool.journal.room():
                return True
        if self._overflow == "drop_oldest":
            evicted = self.spool.evict_oldest(1)
            if not evicted:
                return False
            self.counters.add("evicted_oldest", len(evicted))
            if self.evicted is not None:
                self.evicted.extend(evicted)
                if self.on_evicted is not None:
                    self.on_evicted(len(self.evicted))
            return True
        if self._overflow == "block" and self._block_timeout > 0:
            self.wake.set()
            pause = threading.Event()
            deadline = time.monotonic() + self._block_timeout
            while time.monotonic() < deadline:
                pause.wait(0.01)
                if self.spool.journal.room():
                    return True
        return False

    def _drop(self, reason: str, message: str, *args: object) -> None:
        self.counters.add("dropped_" + reason)
        self._log.log(logging.ERROR, "drop:" + reason, message, *args)

    # -- the delivery's side ----------------------------------------------------------

    def add_marker(self) -> FlushMarker:
        """Queue a flush marker: taken once no event is left to claim."""
        marker = FlushMarker()
        self._markers.append(marker)
        self.wake.set()
        return marker

    @property
    def has_markers(self) -> bool:
        return bool(self._markers)

    def waiting(self) -> bool:
        return self._fresh > 0 or self.spool.journal.unread() > 0 or bool(self._markers)

    def __len__(self) -> int:
        return self._fresh + self.spool.journal.unread()

    def take(self, limit: int) -> tuple[list[RawEvent], Optional[FlushMarker]]:
        """Up to *limit* of the oldest events: the journal's, then those of the
        SQLite file nobody holds; a flush marker once none is left."""
        events = self.spool.journal.take(limit)
        if len(events) < limit and self._rows:
            try:
                claimed = self.spool.claim(limit - len(events))
            except sqlite3.Error as exc:
                report_internal_error(exc)
                self._log.log(logging.ERROR, "spool:claim", "reading the spool failed: %s", exc)
                return events, None
            with self._claimed_lock:
                for seq, event in zip(claimed.seqs, claimed.events):
                    self._claimed[id(event)] = seq
            if not len(claimed):
                self._rows = False  # until a tick, or an aggregation, says otherwise
            events.extend(claimed.events)
            self._fresh = max(0, self._fresh - len(claimed))
        if len(events) < limit:
            self._fresh = 0  # everything there was to take is taken
        marker: Optional[FlushMarker] = None
        if len(events) < limit and self._markers:
            marker = self._markers.popleft()  # one taker at a time: delivery's lock
        return events, marker

    def tick(self) -> None:
        """On each delivery wake: now and then, renew claims, look for work
        other processes left (a restart, a worker that died), and, when
        nothing waits to be sent, catch the accepted history up with its log."""
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + TICK
        try:
            self.spool.renew()
            if self.spool.reap() or self.spool.sqlite_pending():
                self._rows = True
                self._fresh = max(self._fresh, 1)
            if self.spool.journal.adopt_orphans() or self.spool.journal.waiting():
                self._fresh = max(self._fresh, 1)
            self.spool.prune_history()
            if not self.waiting():
                # Idle: the accepted batches logged meanwhile go into the history.
                self.spool.catch_up_history()
        except sqlite3.Error as exc:
            self._log.log(logging.ERROR, "spool:tick", "the spool could not be read: %s", exc)

    def settled(self, batch: EventBatch, error: Optional[DeliveryError]) -> bool:
        """How *batch* settled: accepted, refused, or given back to wait.

        Returns True when its events went back to the spool to wait (out of
        retry time, or shut down): not a failure, and nothing to report.
        """
        raw = batch.raw_events()
        journal = self.spool.journal
        mine = journal.owned(raw)
        seqs = self._seqs_of(raw) if len(mine) < len(raw) else []
        try:
            if error is None:
                if mine:
                    self.spool.accepted_events(mine)
                if seqs:
                    self.spool.ack(seqs)
                return False
            if error.reason in ("retries_exhausted", "shutdown"):
                delay = RETURN_DELAY if error.reason == "retries_exhausted" else 0.0
                journal.give_back(mine, delay)
                self.spool.release(seqs, delay)
                self.counters.add("returned_to_spool", len(seqs) + len(mine))
                if delay:
                    self._rows = True
                return True
            if mine:
                reason = error.code or error.reason
                self.spool.bury_events(mine, reason, error.code, str(error))
            self.spool.bury(
                DeadLetter(seq, error.code or error.reason, error.code, str(error)) for seq in seqs
            )
        except sqlite3.Error as exc:
            # The claim runs out and the events are sent again, under the
            # same identifiers: Stripe's dedupe covers it.
            report_internal_error(exc)
            self._log.log(logging.ERROR, "spool:settle", "the spool could not be updated: %s", exc)
        return False

    def _seqs_of(self, events: Sequence[RawEvent]) -> list[int]:
        with self._claimed_lock:
            return [
                seq
                for seq in (self._claimed.pop(id(event), None) for event in events)
                if seq is not None
            ]

    def added(self, count: int) -> None:
        """*count* events went into the spool another way (an aggregation): go and send them.

        Counted as spooled, as an insert is: ``stats()["recorded"]`` counts
        events, aggregated ones included, so it balances with what is sent.
        """
        self.counters.add("spooled", count)
        self._rows = True
        self._fresh += count
        self.wake.set()

    def pending(self) -> int:
        """Events waiting in the spool, every process's."""
        try:
            return self.spool.pending_count()
        except sqlite3.Error:
            return 0

    def flush_point(self) -> Optional[int]:
        try:
            return self.spool.last_seq()
        except sqlite3.Error:
            return None

    def pending_upto(self, point: int) -> int:
        try:
            return self.spool.pending_upto(point)
        except sqlite3.Error:
            return 0

    def leftovers(self) -> tuple[list[RawEvent], list[FlushMarker]]:
        """At shutdown: nothing is left behind, the events wait in the spool."""
        markers: list[FlushMarker] = []
        while self._markers:
            markers.append(self._markers.popleft())
        return [], markers

    def reset_after_fork(self) -> None:
        """In a forked child: its own connection, no claims, no markers of the parent's."""
        self._markers = deque()
        self.wake.reset_after_fork()
        if self.evicted is not None:
            self.evicted = deque()
        self._claimed = {}
        self._claimed_lock = threading.Lock()
        self._fresh = 0
        self.spool.after_fork_in_child()
