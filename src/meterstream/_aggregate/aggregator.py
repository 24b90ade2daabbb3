"""Pre-aggregation of sum meters: many uses, one event per window.

A :class:`Aggregator` adds up the uses of one event name, customer and set of
dimensions within a window of ``aggregation_window`` seconds aligned to the
wall clock, and :meth:`Aggregator.close` turns each ended window into one event
per key whose value is the exact sum of the uses (split in several events
when the sum has more than Stripe's 15 significant digits).

The record path stays cheap and lock-free: each thread adds into its own
dicts (``threading.local``), so two threads never race on one counter. The
thread that closes windows takes a thread's dicts by swapping in empty ones
under that thread's lock (taken by its owner only when its window rolls
over, once a window), then waits until the owner is not inside an ``add``
that may still hold the old dicts: each ``add`` makes the thread's ``gen``
counter odd on entry and even on exit, so an even value, or any change,
says the old dicts are no longer written to. That relies on the GIL making
each thread's stores visible in order, as the rest of the record path does.

Sums are exact: ints add as ints; Decimals and floats add as Decimals in a
context that traps any rounding, floats taken as the non-aggregated path
writes them (``format(value, ".15g")``), so an aggregated total is exactly what
Stripe would have summed from the unaggregated events. Floats are kept as they
come and converted when their window closes, on the closing thread (up to a
bound per thread, past which they are converted as they come).
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Callable, Optional, Union

from meterstream._aggregate.arithmetic import (
    EXACT,
    FLOAT_HIGH,
    FLOAT_LOW,
    ZERO,
    DimsKey,
    Key,
    Number,
    add_into,
    dimensions_key,
    emit,
    exact_decimal,
    float_sums,
    new_aggregate_id,
    window_start,
)
from meterstream._record.events import RawEvent

__all__ = ["DEFAULT_MAX_KEYS", "MAX_AGGREGATE_ID", "Aggregator"]

#: Floats one thread keeps as they came in one window, at 32 bytes each;
#: past it they are converted as they come (on the caller's thread).
_MAX_HELD_FLOATS = 65_536
#: Distinct keys one thread may hold in one window; past it, uses of new
#: keys are not aggregated (the caller records them as usual, under the
#: buffer's own bound), so a key per request cannot grow memory unbounded.
DEFAULT_MAX_KEYS = 100_000
#: Longest aggregate id: leaves room in Stripe's 100 characters for the rest.
MAX_AGGREGATE_ID = 40


# -- the aggregator -----------------------------------------------------------------


class _ThreadSums:
    """One thread's sums for its current window; written by that thread only."""

    __slots__ = ("acc", "dec", "end", "flt", "gen", "held", "lock", "skipped", "start", "thread")

    def __init__(self) -> None:
        self.acc: dict[Key, int] = {}  # int uses: their sum
        self.dec: dict[Key, Decimal] = {}  # Decimal uses (and floats past the bound)
        self.flt: dict[Key, list[float]] = {}  # float uses, converted at close
        self.held = 0  # floats in flt: a soft bound, reset with it
        self.start = math.inf  # no window yet: the first add rolls
        self.end = -math.inf
        # Odd while the owner is inside add(); +2 per add (see the module doc).
        self.gen = 0
        self.skipped = 0  # adds that entered but did not aggregate
        self.lock = threading.Lock()
        self.thread = weakref.ref(threading.current_thread())


#: Windows (and dicts) a closer took from a thread, waiting for that
#: thread to leave the add() that may still write to them.
_Taken = tuple[_ThreadSums, int, float, dict[Key, int], dict[Key, Decimal], dict[Key, list[float]]]
_Ready = tuple[float, dict[Key, int], dict[Key, Decimal], dict[Key, list[float]]]


class Aggregator:
    """Aggregates uses of sum-meter event names into one event per key and window.

    Args:
        names: the event names to aggregate (``aggregate`` setting, sum modes).
        window: the window in seconds; divides 60 (see
            :func:`meterstream._config.aggregate.parse_aggregation_window`).
        aggregate_id: the identifier prefix of aggregated events; default a random
            one, renewed in a forked child.
        clock: wall-clock seconds, ``time.time`` unless testing.
        max_keys: distinct keys a thread aggregates in one window before it
            declines new ones.
    """

    def __init__(
        self,
        names: Iterable[str],
        window: int,
        *,
        aggregate_id: Optional[str] = None,
        clock: Callable[[], float] = time.time,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1 or 60 % window:
            raise ValueError(f"window must be whole seconds dividing a minute, got {window!r}")
        if aggregate_id is not None and not 1 <= len(aggregate_id) <= MAX_AGGREGATE_ID:
            raise ValueError(
                f"fold_id must be 1..{MAX_AGGREGATE_ID} characters, got {aggregate_id!r}"
            )
        self._names = frozenset(names)
        self._window = window
        self._clock = clock
        self._max_keys = max_keys
        self._given_aggregate_id = aggregate_id
        self._refused: dict[str, str] = {}
        self._reset()
        _AGGREGATORS.add(self)

    def _reset(self) -> None:
        self.aggregate_id = self._given_aggregate_id or new_aggregate_id()
        self._pid = os.getpid()
        self._local = threading.local()
        self._states: list[_ThreadSums] = []
        self._states_lock = threading.Lock()
        self._close_lock = threading.Lock()
        # Windows their owners rolled over from: (start, acc, dec). Never
        # replaced, only popped from: a thread may have looked it up and be
        # about to append (deque.append and popleft are atomic).
        self._ready: deque[_Ready] = deque()
        self._taken: list[_Taken] = []
        self._closes = 0
        self._retired_uses = 0
        self._events = 0

    # -- the hot path -------------------------------------------------------

    def add(
        self,
        event_name: str,
        customer: str,
        value: Any,
        dimensions: Union[Mapping[str, str], DimsKey] = None,
    ) -> bool:
        """Aggregate one use made now; False when it is not aggregated (record it as usual).

        Its arguments have passed the record path's checks: *customer* a
        customer id string, *value* an int, float or Decimal, *dimensions*
        a dict of strings, or its :func:`dimensions_key` (sorted pairs).
        Uses with an identifier or timestamp of their own must not come
        here: see docs/aggregation.md.
        """
        if event_name not in self._names:
            return False
        try:
            st: _ThreadSums = self._local.sums
        except AttributeError:
            st = self._new_thread()
        if dimensions is not None and type(dimensions) is not tuple:
            dimensions = dimensions_key(dimensions)
        key = (event_name, customer, dimensions)
        if type(value) is not int:
            if (
                type(value) is float
                and st.held < _MAX_HELD_FLOATS
                and FLOAT_LOW <= abs(value) < FLOAT_HIGH
            ):
                return self._add_float(st, key, value)
            return self._add_decimal(st, key, value)
        st.gen += 1
        try:
            now = self._clock()
            if not st.start <= now < st.end:
                self._roll(st, now)
            acc = st.acc
            prev = acc.get(key)
            if prev is None:
                if len(acc) >= self._max_keys:
                    st.skipped += 1
                    return False
                prev = 0
            acc[key] = prev + value
            return True
        finally:
            st.gen += 1

    def _add_float(self, st: _ThreadSums, key: Key, value: float) -> bool:
        # Kept as is: its exact decimal form is made when the window closes,
        # off the caller's thread, as the unaggregated path makes it when encoding.
        st.gen += 1
        try:
            now = self._clock()
            if not st.start <= now < st.end:
                self._roll(st, now)
            flt = st.flt
            values = flt.get(key)
            if values is None:
                if len(flt) >= self._max_keys:
                    st.skipped += 1
                    return False
                values = flt[key] = []
            values.append(value)
            st.held += 1
            return True
        finally:
            st.gen += 1

    def _add_decimal(self, st: _ThreadSums, key: Key, value: Any) -> bool:
        number = exact_decimal(value)
        if number is None:
            return False
        st.gen += 1
        try:
            now = self._clock()
            if not st.start <= now < st.end:
                self._roll(st, now)
            dec = st.dec
            prev = dec.get(key)
            if prev is None:
                if len(dec) >= self._max_keys:
                    st.skipped += 1
                    return False
                prev = ZERO
            dec[key] = EXACT.add(prev, number)
            return True
        finally:
            st.gen += 1

    def _new_thread(self) -> _ThreadSums:
        st = _ThreadSums()
        with self._states_lock:
            self._states.append(st)
        self._local.sums = st
        return st

    def _roll(self, st: _ThreadSums, now: float) -> None:
        """The owner's clock left its window: hand the old one over, start the new."""
        start = window_start(now, self._window)
        with st.lock:
            if st.acc or st.dec or st.flt:
                self._ready.append((st.start, st.acc, st.dec, st.flt))
                st.acc = {}
                st.dec = {}
                st.flt = {}
            st.held = 0
            st.start = start
            st.end = start + self._window

    # -- closing windows ------------------------------------------------------

    def close(
        self, now: Optional[float] = None, *, force: bool = False, wait: float = 2.0
    ) -> list[RawEvent]:
        """The events of every window that ended by *now*; of every window, when *force*.

        ``flush()`` and ``shutdown()`` force. Safe from any thread, and
        concurrently with ``add``; each use is in exactly one returned event.
        *wait* bounds how long to wait for a thread preempted inside ``add``;
        its sums are returned by a later call if that runs out (see
        :meth:`pending`).
        """
        if self._pid != os.getpid():
            self.after_fork()
        with self._close_lock:
            if now is None:
                now = self._clock()
            sums: dict[tuple[float, Key], Number] = {}
            ready = self._ready
            while ready:
                start, acc, dec, flt = ready.popleft()
                add_into(sums, start, acc)
                add_into(sums, start, dec)
                add_into(sums, start, float_sums(flt))
            with self._states_lock:
                states = list(self._states)
            for st in states:
                with st.lock:
                    if not (st.acc or st.dec or st.flt) or (not force and now < st.end):
                        continue
                    self._taken.append((st, st.gen, st.start, st.acc, st.dec, st.flt))
                    st.acc = {}
                    st.dec = {}
                    st.flt = {}
                    st.held = 0  # the owner may lose this store: a soft bound
            deadline = time.monotonic() + wait
            still: list[_Taken] = []
            for item in self._taken:
                st, gen = item[0], item[1]
                while gen & 1 and st.gen == gen and time.monotonic() < deadline:
                    time.sleep(0.0002)  # lets the owner finish its add()
                if gen & 1 and st.gen == gen:
                    still.append(item)
                    continue
                add_into(sums, item[2], item[3])
                add_into(sums, item[2], item[4])
                add_into(sums, item[2], float_sums(item[5]))
            self._taken = still
            self._forget_dead_threads(states)
            if not sums:
                return []
            events = emit(sums, self.aggregate_id, self._closes)
            self._closes += 1
            self._events += len(events)
            return events

    def _forget_dead_threads(self, states: list[_ThreadSums]) -> None:
        held = {id(item[0]) for item in self._taken}
        for st in states:
            thread = st.thread()
            if thread is not None and thread.is_alive():
                continue
            if st.acc or st.dec or st.flt or st.gen & 1 or id(st) in held:
                continue
            with self._states_lock:  # stats() reads both under it
                self._states.remove(st)
                self._retired_uses += st.gen // 2 - st.skipped

    def pending(self) -> bool:
        """True while some aggregated use is not yet in an event :meth:`close` returned."""
        if self._ready or self._taken:
            return True
        with self._states_lock:
            return any(st.acc or st.dec or st.flt for st in self._states)

    # -- meters that do not sum, stats, forks ---------------------------------

    @property
    def names(self) -> frozenset[str]:
        """The event names aggregated now."""
        return self._names

    def refuse(self, event_name: str, reason: str) -> bool:
        """Stop aggregating *event_name* (its meter does not sum); False if already refused.

        Uses already aggregated stay aggregated: they were added while the name was
        believed to be a sum, and are closed with the rest.
        """
        if event_name not in self._names:
            return False
        self._refused[event_name] = reason
        self._names = self._names - {event_name}
        return True

    @property
    def refused(self) -> dict[str, str]:
        """Event names refused, with the reason."""
        return dict(self._refused)

    def stats(self) -> dict[str, int]:
        """``aggregated_uses`` (uses aggregated), ``aggregated_events`` (events made from
        them) and ``aggregate_refused`` (event names sent unaggregated: their meter
        does not sum)."""
        with self._states_lock:
            uses = self._retired_uses + sum(st.gen // 2 - st.skipped for st in self._states)
        return {
            "aggregated_uses": uses,
            "aggregated_events": self._events,
            "aggregate_refused": len(self._refused),
        }

    def after_fork(self) -> None:
        """In a forked child: start with no windows and a new aggregate id.

        Called by an ``os.register_at_fork`` hook, and by anything that notices
        a fork the hooks missed; does nothing in the process that made it.
        The parent's open windows stay the parent's: the child never sends
        them, and its own events never share their identifiers.
        """
        if self._pid != os.getpid():
            self._reset()


_AGGREGATORS: weakref.WeakSet[Aggregator] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for aggregator in list(_AGGREGATORS):
        aggregator.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
