"""The bounded in-process buffer between ``record()`` and the flusher."""

from __future__ import annotations

import linecache
import threading
import time
from collections import deque
from itertools import repeat, starmap
from typing import Any, Callable, Optional, Union

from meterstream._delivery.counters import Counters

__all__ = ["APPEND", "APPEND_FILENAME_PREFIX", "Buffer", "FlushMarker", "Wake"]


class Wake:
    """A flag like :class:`threading.Event`, whose :meth:`set` wakes one waiter.

    The delivery threads all wait on it. A full batch needs one of them, so
    waking every idle one (``Event.set`` does) would cost each a trip through
    the GIL the app's threads need. The one woken is the last to have started
    waiting, the thread whose stack and caches are warmest; the others sleep
    on until more batches wait than one thread can send. :meth:`set_all` is
    for shutdown.
    """

    __slots__ = ("_flag", "_lock", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: list[Any] = []  # locks held for their waiters, newest last
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with self._lock:
            self._flag = True
            if self._waiters:
                self._waiters.pop().release()

    def set_all(self) -> None:
        with self._lock:
            self._flag = True
            while self._waiters:
                self._waiters.pop().release()

    def clear(self) -> None:
        self._flag = False

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock, no waiters (their threads did not fork)."""
        self._lock = threading.Lock()
        self._waiters = []
        self._flag = False

    def wait(self, timeout: Optional[float] = None) -> bool:
        """True once set (at once if it is), False when *timeout* ran out first."""
        with self._lock:
            if self._flag:
                return True
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        if not waiter.acquire(True, -1 if timeout is None else timeout):
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return self._flag


class FlushMarker:
    """Put in the buffer by ``flush()``: set once every event before it is settled.

    The buffer is FIFO and batches are numbered as they are taken, so once
    every batch numbered up to the marker is settled, everything recorded
    before ``flush()`` was called has been delivered, refused or dropped.
    """

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


Item = Union[tuple[Any, ...], FlushMarker]

#: The append onto the buffer, written once: the bound and the overflow
#: policy, the append, the early wake when a full batch waits. Functions
#: that append are compiled from it (:meth:`Buffer.compile_appender`).
APPEND = """\
    if len(items) >= max_size and not overflow():
        {full}
    append({item})
    if len(items) >= batch_size and not wake._flag:
        wake.set()
"""
#: How the file names of the compiled appenders begin (tracebacks, profiles, a test).
APPEND_FILENAME_PREFIX = "<meterstream buffer append"


def _compile_generated(source: str, name: str) -> Any:
    """Compile generated *source* under a file name of its own, registered
    with :mod:`linecache` as attrs' ``_make.py`` does, so that tracebacks,
    debuggers and ``inspect.getsource`` show it.

    One name per distinct source: every client compiles the same text, and
    shares one entry, so making clients does not grow the cache. Entries
    without a modification time survive ``linecache.checkcache()``.
    """
    base = f"{APPEND_FILENAME_PREFIX}: {name}"
    filename, count = base + ">", 1
    while True:
        entry = (len(source), None, source.splitlines(True), filename)
        if linecache.cache.setdefault(filename, entry) == entry:
            return compile(source, filename, "exec")
        filename, count = f"{base}-{count}>", count + 1


class Buffer:
    """A bounded FIFO of recorded events with an overflow policy: the
    in-memory :class:`~meterstream._delivery.event_queue.EventQueue`.

    The record path appends without taking a lock: ``deque.append`` is atomic,
    and the bound is checked just before, so concurrent producers can overshoot
    ``max_size`` by at most one event each (never unboundedly). Only overflow
    takes the lock. One consumer at a time (under the delivery's lock) takes
    batches from the other end.

    Overflow policies, when ``max_size`` events wait:
      * ``drop_newest``: the new event is dropped;
      * ``drop_oldest``: the oldest waiting event is dropped to make room;
      * ``block``: the caller waits up to ``block_timeout`` seconds for room,
        then the new event is dropped.
    """

    def __init__(
        self,
        max_size: int,
        overflow: str = "drop_newest",
        block_timeout: float = 1.0,
        batch_size: int = 100,
        counters: Optional[Counters] = None,
    ) -> None:
        self.items: deque[Item] = deque()
        self.max_size = max_size
        self.batch_size = batch_size
        self._overflow = overflow
        self._block_timeout = block_timeout
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        #: Set when a full batch waits, or a flush was asked for.
        self.wake = Wake()
        #: Where drops by the overflow policy are counted.
        self.counters = counters if counters is not None else Counters()
        #: Events ``drop_oldest`` evicted, waiting to be handed to
        #: ``on_delivery_error``; None when nobody listens.
        self.evicted: Optional[deque[tuple[Any, ...]]] = None
        #: Called after each eviction into ``evicted`` (outside the lock) with
        #: how many wait there: the delivery reports them, and bounds them.
        self.on_evicted: Optional[Callable[[int], None]] = None
        self._markers = 0
        #: Append one event; False when the overflow policy dropped it instead.
        self.put: Callable[[tuple[Any, ...]], bool] = self.compile_appender(
            "put", "item", head="", item="item", full="return False"
        )

    def compile_appender(
        self,
        name: str,
        params: str,
        *,
        head: str,
        item: str,
        full: str,
        env: Optional[dict[str, Any]] = None,
    ) -> Callable[..., Any]:
        """A function of *params* that runs *head*, then :data:`APPEND` with *item*.

        ``put`` is one; a record path that cannot afford a call to ``put``
        (a tenth of a constant-value record, docs/performance.md) is
        another, compiled from the same text, so the two cannot drift.

        Args:
            name: the function's name (in tracebacks and profiles).
            params: its parameter list, as source.
            head: source run first, indented by four spaces (may return).
            item: the expression appended.
            full: the statement run when the overflow policy drops the item.
            env: more names the source may read.

        Returns:
            The function; it returns True when the item was appended.
        """
        source = (
            f"def {name}({params}):\n{head}"
            + APPEND.format(item=item, full=full)
            + "    return True\n"
        )
        # Names the source reads, bound once: the deque and the wake-up stay
        # the same objects for the buffer's life (reset_after_fork empties
        # them in place).
        namespace: dict[str, Any] = dict(env or {})
        namespace.update(
            items=self.items,
            append=self.items.append,
            max_size=self.max_size,
            batch_size=self.batch_size,
            overflow=self.overflow,
            wake=self.wake,
        )
        exec(_compile_generated(source, name), namespace)
        function: Callable[..., Any] = namespace[name]
        return function

    def overflow(self) -> bool:
        """The buffer is full: apply the policy. True when there is now room."""
        with self._lock:
            items = self.items
            if len(items) - self._markers < self.max_size:
                return True
            if self._overflow == "drop_oldest":
                markers = []
                while isinstance(items[0], FlushMarker):  # flush() promises stay in place
                    markers.append(items.popleft())
                oldest = items.popleft()
                items.extendleft(reversed(markers))
                self.counters.add("evicted_oldest")
                evicted = self.evicted
                if evicted is None:
                    return True
                evicted.append(oldest)  # type: ignore[arg-type]
                waiting = len(evicted)
            else:
                if self._overflow == "block" and self._block_timeout > 0:
                    self.wake.set()
                    deadline = time.monotonic() + self._block_timeout
                    while len(items) - self._markers >= self.max_size:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._room.wait(remaining)
                    if len(items) - self._markers < self.max_size:
                        return True
                self.counters.add("dropped_queue_full")
                return False
        # Outside the lock: the listener may hand evictions to on_delivery_error.
        listener = self.on_evicted
        if listener is not None:
            listener(waiting)
        return True

    def add_marker(self) -> FlushMarker:
        """Append a flush marker (never dropped, never counted as an event)."""
        marker = FlushMarker()
        with self._lock:
            self._markers += 1
        self.items.append(marker)
        self.wake.set()
        return marker

    def take(self, limit: int) -> tuple[list[tuple[Any, ...]], Optional[FlushMarker]]:
        """Remove up to *limit* events from the old end.

        Stops early at a flush marker, which is returned too: the caller sets
        it once the events taken with it are settled.
        """
        items = self.items
        waiting = len(items)  # before the marker count: a marker added after is beyond
        if not self._markers and self._overflow != "drop_oldest":
            # No marker among the first *waiting* items, and nobody else
            # takes from this end (drop_oldest does): take them in C code
            # rather than a loop of ours.
            batch: list[tuple[Any, ...]] = list(
                starmap(items.popleft, repeat((), min(limit, waiting)))  # type: ignore[arg-type]
            )
            if self._overflow == "block" and batch:
                with self._lock:
                    self._room.notify_all()
            return batch, None
        batch = []
        marker: Optional[FlushMarker] = None
        while len(batch) < limit:
            try:
                item = items.popleft()
            except IndexError:
                break
            if type(item) is FlushMarker:
                marker = item
                with self._lock:
                    self._markers -= 1
                break
            batch.append(item)  # type: ignore[arg-type]
        if self._overflow == "block" and batch:
            with self._lock:
                self._room.notify_all()
        return batch, marker

    # -- the rest of the EventQueue protocol: what delivery asks -----------------------

    def waiting(self) -> bool:
        """Anything to take: an event or a flush marker."""
        return bool(self.items)

    def pending(self) -> int:
        """Events waiting to be taken."""
        return len(self)

    def tick(self) -> None:
        """Called on each delivery wake (the spool renews its claims here)."""

    def settled(self, batch: Any, error: Any) -> bool:
        """How a batch taken from here settled; True when its events came back
        to wait here instead (a spool's, never this buffer's)."""
        return False

    def flush_point(self) -> Optional[int]:
        """Where a flush must see everything settled beyond its marker (a spool's rows)."""
        return None

    def pending_upto(self, point: int) -> int:
        """Events up to *point* still waiting (a spool's)."""
        return 0

    def leftovers(self) -> tuple[list[tuple[Any, ...]], list[FlushMarker]]:
        """At shutdown: the events nobody will send now, and the flush markers."""
        left: list[tuple[Any, ...]] = []
        markers: list[FlushMarker] = []
        while self.items:
            raw, marker = self.take(len(self.items))
            left.extend(raw)
            if marker is not None:
                markers.append(marker)
        return left, markers

    @property
    def has_markers(self) -> bool:
        return self._markers > 0

    def __len__(self) -> int:
        """Events waiting (flush markers excluded)."""
        return max(0, len(self.items) - self._markers)

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks, and nothing of the parent's events."""
        # Emptied in place: put() holds the deque and the wake-up.
        self.items.clear()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self.wake.reset_after_fork()
        self._markers = 0
        if self.evicted is not None:
            self.evicted = deque()
