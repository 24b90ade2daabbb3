"""Pre-aggregation with a spool: uses stored in the spool, aggregated there exactly once.

With ``spool_path`` and ``aggregate`` both set, a use of an aggregated event name
is one durable insert into the spool's ``uses`` table (what ``record()``
costs with a spool anyway), not a sum in memory: a crash loses no open
window. The delivery tick, ``flush()`` and ``shutdown()`` aggregate the uses of
ended windows (of every window, for the last two) in one write transaction
(:meth:`meterstream._spool.spool.Spool.aggregate_due`): read them, sum them exactly
(:mod:`meterstream._aggregate.arithmetic`'s arithmetic and 15-digit split), insert the
aggregated events into ``pending``, delete the uses, commit. Before the commit
nothing changed; after it the events wait with their identifiers fixed,
and are delivered like any spooled event.

How identifiers stay unique across aggregations: see :mod:`meterstream._spool.aggregate_store`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional, Union

from meterstream._aggregate.arithmetic import DimsKey, window_start
from meterstream._internal import report_internal_error
from meterstream._record.events import RawEvent
from meterstream._spool.aggregate_store import stored_value
from meterstream._spool.rows import encode_dimensions
from meterstream._spool.spool import Spool, SpoolFull

__all__ = ["SpoolAggregator"]


class SpoolAggregator:
    """The :class:`meterstream._aggregate.aggregator.Aggregator` of a client with a spool.

    :meth:`add` stores the use in the spool; :meth:`close` aggregates the ended
    windows there and returns no events (they are in the spool already).

    Args:
        spool: the client's spool.
        names: the event names to aggregate.
        window: the window in seconds (dividing a minute).
        clock: wall-clock seconds.
        on_aggregated: called with the number of events an aggregation put in the spool.
    """

    def __init__(
        self,
        spool: Spool,
        names: Iterable[str],
        window: int,
        *,
        clock: Callable[[], float] = time.time,
        on_aggregated: Optional[Callable[[int], None]] = None,
    ) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1 or 60 % window:
            raise ValueError(f"window must be whole seconds dividing a minute, got {window!r}")
        self._spool = spool
        self._names = frozenset(names)
        self._window = window
        self._clock = clock
        self._on_aggregated = on_aggregated
        self._refused: dict[str, str] = {}
        self._events = 0
        self._uses_before = spool.uses_appended

    def add(
        self,
        event_name: str,
        customer: str,
        value: Any,
        dimensions: Union[Mapping[str, str], DimsKey] = None,
    ) -> bool:
        """Store one use made now, durably; False when it is not aggregated (record
        it as usual: the spool's overflow policy and drop counts apply there)."""
        if event_name not in self._names:
            return False
        stored = stored_value(value)
        if stored is None:
            return False
        start = window_start(self._clock(), self._window)
        try:
            self._spool.append_use(
                event_name,
                customer,
                stored,
                start,
                start + self._window,
                encode_dimensions(dimensions),
            )
        except Exception as exc:  # recorded unaggregated: the spool's own path counts a drop
            if not isinstance(exc, (SpoolFull, sqlite3.Error)):
                report_internal_error(exc)
            return False
        return True

    def close(
        self, now: Optional[float] = None, *, force: bool = False, wait: float = 2.0
    ) -> list[RawEvent]:
        """Aggregate the windows ended by *now* (all, when *force*) in the spool.

        Returns no events: the aggregated ones wait in the spool's pending table.

        Raises:
            sqlite3.Error: the aggregation failed; its uses wait for the next one.
        """
        del wait  # nothing in memory to wait for
        if now is None:
            now = self._clock()
        oldest = self._spool.oldest_use_end()
        if oldest is None or (oldest > now and not force):
            return []
        made = self._spool.aggregate_due(now, force=force)
        if made:
            self._events += made
            if self._on_aggregated is not None:
                self._on_aggregated(made)
        return []

    def pending(self) -> bool:
        """True while some use waits in the spool to be aggregated (any process's)."""
        return self._spool.oldest_use_end() is not None

    @property
    def names(self) -> frozenset[str]:
        """The event names aggregated now."""
        return self._names

    def refuse(self, event_name: str, reason: str) -> bool:
        """Stop aggregating *event_name*: its later uses go to ``pending`` as they come.

        Uses already stored are aggregated with the rest.
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
        """As :meth:`Aggregator.stats`, plus ``aggregate_waiting``: uses waiting
        in the spool to be aggregated, every process's."""
        return {
            "aggregated_uses": self._spool.uses_appended - self._uses_before,
            "aggregated_events": self._events,
            "aggregate_refused": len(self._refused),
            "aggregate_waiting": self._spool.uses_count(),
        }

    def after_fork(self) -> None:
        """In a forked child: count from here (the spool reopens itself)."""
        self._uses_before = self._spool.uses_appended
        self._events = 0
