"""``RecordPath``: which way a client's records go, decided in one place.

A record may skip the general, checked path (``record_use``) only while
nothing about the client needs it: the delivery threads run, nobody watches
the uses, no span events are emitted, no warning is due, the client is not
shut down, and the process did not fork. Two fast paths exist: the compiled
append of ``record_constant`` (``slow`` False) and ``record()``'s direct
aggregation into the in-memory aggregator (``aggregate_now``).

Every fact that choice rests on lives here, and changes only through
:meth:`RecordPath.update` (or :meth:`RecordPath.after_fork_in_child`), which
decides again under a lock: a delivery thread refreshing OpenTelemetry's
mode and ``shutdown()`` closing the client cannot interleave and leave a
fast path open on a closed client. The record path reads the fields
without a lock: each is one attribute.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Optional, Union

from meterstream._aggregate.aggregator import Aggregator
from meterstream._config.setting import UNSET
from meterstream._record.fork import new_canary
from meterstream._spool.aggregate import SpoolAggregator

__all__ = ["RecordPath", "UseSink"]

#: ``(event_name, customer, value, timestamp, dimensions, identifier)`` of a use.
UseSink = Callable[[str, str, Any, float, Optional[dict[str, str]], Optional[str]], None]


class RecordPath:
    """The state a client's record path reads, and the choice of fast path made from it.

    Args:
        aggregator: the client's aggregator (in memory, in the spool) or None.
        spool: the client records into a spool (each record a durable insert).
        always_slow: something that holds for the client's life sends every
            record the checked way (``disabled_events``, ``sync_mode``).
        span_events: OpenTelemetry span events are emitted per record.
        warn_no_key: the first record must warn that no API key is set.
        started: asked whether the delivery threads run (they are started
            by the first record, which a fast path would skip).
    """

    __slots__ = (
        "_aggregator",
        "_always_slow",
        "_lock",
        "_spool",
        "_started",
        "aggregate_now",
        "canary",
        "closed",
        "pid",
        "slow",
        "span_events",
        "use_sink",
        "warn_no_key",
    )

    def __init__(
        self,
        *,
        aggregator: Optional[Union[Aggregator, SpoolAggregator]],
        spool: bool,
        always_slow: bool,
        span_events: bool,
        warn_no_key: bool,
        started: Callable[[], bool],
    ) -> None:
        self._aggregator = aggregator
        self._spool = spool
        self._always_slow = always_slow
        self._started = started
        self._lock = threading.Lock()
        #: One byte that reads 0 in a forked child (see ``_record/fork.py``)
        #: until the client is made usable there.
        self.canary = new_canary()
        #: The process the client was last made usable in.
        self.pid = os.getpid()
        #: True once ``shutdown()`` began; never False again.
        self.closed = False
        #: A span event per record (``otel_span_events``, or auto with an SDK).
        self.span_events = span_events
        #: Called with each use accepted (``meterstream.testing`` watches them).
        self.use_sink: Optional[UseSink] = None
        #: The first record warns that nothing goes to Stripe (no API key).
        self.warn_no_key = warn_no_key
        #: True: ``record_constant`` takes the checked path.
        self.slow = True
        #: The in-memory aggregator ``record()`` may add a plain use to
        #: directly, or None: the checked path.
        self.aggregate_now: Optional[Aggregator] = None
        self._decide()

    def update(
        self,
        *,
        closed: bool = UNSET,
        span_events: bool = UNSET,
        use_sink: Optional[UseSink] = UNSET,
        warn_no_key: bool = UNSET,
    ) -> None:
        """Take the facts given (the others stay), and decide the fast path again.

        Called with nothing when a fact asked of another object changed
        (the delivery threads started).

        Args:
            closed: True when ``shutdown()`` begins.
            span_events: OpenTelemetry's auto mode decided again.
            use_sink: a watcher of every use, or None for none.
            warn_no_key: False once the warning was given.
        """
        with self._lock:
            if closed is not UNSET:
                self.closed = self.closed or closed
            if span_events is not UNSET:
                self.span_events = span_events
            if use_sink is not UNSET:
                self.use_sink = use_sink
            if warn_no_key is not UNSET:
                self.warn_no_key = warn_no_key
            self._decide()

    def after_fork_in_child(self) -> None:
        """In a forked child, once the client's parts are reset: a fresh lock,
        this process's pid, the canary armed again, and the choice made again
        (the delivery threads start with the next record)."""
        self._lock = threading.Lock()
        self.pid = os.getpid()
        self.canary[0] = 1
        with self._lock:
            self._decide()

    def _decide(self) -> None:
        """Under the lock: which fast path records may take now."""
        quiet = not (
            self._always_slow
            or self.closed
            or self.span_events
            or self.warn_no_key
            or self.use_sink is not None
            or not self._started()
        )
        # A spool's put is one durable insert, and aggregation happens on the
        # checked path: except that record() adds a plain use (an int or a
        # float that fits, a known customer, no dimensions, identifier or
        # timestamp) straight into an in-memory aggregator.
        aggregator = self._aggregator
        self.slow = not quiet or self._spool or aggregator is not None
        self.aggregate_now = aggregator if quiet and isinstance(aggregator, Aggregator) else None

    def __repr__(self) -> str:
        return (
            f"<RecordPath slow={self.slow} aggregate_now={self.aggregate_now is not None} "
            f"closed={self.closed}>"
        )
