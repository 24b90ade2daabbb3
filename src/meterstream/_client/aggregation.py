"""A client's aggregation wiring: which aggregator it aggregates into, the meter
check on the first delivery tick, and the windows put into the buffer when
they end.

The aggregator itself (:class:`Aggregator` in memory, :class:`SpoolAggregator` with a
spool) does the arithmetic; this decides which one, when its names are
checked against Stripe's meters, and where its events go.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

from meterstream._aggregate.aggregator import Aggregator
from meterstream._aggregate.meters import MetersSource, apply_meter_check
from meterstream._config.settings import Settings
from meterstream._delivery.event_queue import EventQueue
from meterstream._exporters import Exporter
from meterstream._internal import report_internal_error
from meterstream._spool.aggregate import SpoolAggregator
from meterstream._spool.sink import SpoolBuffer

__all__ = ["Aggregation"]


class Aggregation:
    """Aggregates a client's uses of sum meters, or nothing (``aggregator`` is None).

    Args:
        settings: the client's settings (``aggregate``, ``aggregation_window``).
        buffer: where the client's events go; a spool's buffer gets a
            :class:`SpoolAggregator`, made without ``aggregate`` too: uses a
            previous process left in the spool are aggregated and delivered
            all the same.
        exporter: the client's exporter, or the client's meters read from
            it: when it is a source of Stripe's meters (:class:`MetersSource`,
            as the Stripe exporter is), the aggregated names are checked
            against them.
        put: takes each event a closed window makes (the buffer's put).
    """

    def __init__(
        self,
        settings: Settings,
        buffer: EventQueue,
        exporter: Union[Exporter, MetersSource],
        put: Callable[[Any], Any],
    ) -> None:
        self._put = put
        #: Uses of sum meters aggregated per customer and window, or None.
        self.aggregator: Optional[Union[Aggregator, SpoolAggregator]] = None
        if isinstance(buffer, SpoolBuffer):
            # Uses wait in the spool, aggregated there once: a crash loses no window.
            self.aggregator = SpoolAggregator(
                buffer.spool,
                sorted(settings.aggregate),
                settings.aggregation_window,
                on_aggregated=buffer.added,
            )
        elif settings.aggregate and settings.enabled:
            self.aggregator = Aggregator(sorted(settings.aggregate), settings.aggregation_window)
        aggregates = self.aggregator is not None and bool(self.aggregator.names)
        #: Where the meters are read, until the first tick has checked them.
        self._meters: Optional[MetersSource] = None
        if aggregates and isinstance(exporter, MetersSource):
            self._meters = exporter

    def on_tick(self) -> None:
        """A delivery wake: check the meters (the first time), then put the
        events of the windows that ended."""
        if self.aggregator is None:
            return
        meters, self._meters = self._meters, None
        if meters is not None:
            # Once, on a delivery thread: which aggregated names really sum.
            try:
                apply_meter_check(self.aggregator, meters)
            except Exception as exc:
                report_internal_error(exc)
        self.close_windows(force=False)

    def close_windows(self, *, force: bool) -> None:
        """Put the events of the windows that ended (all of them, when forced)."""
        aggregator = self.aggregator
        if aggregator is None:
            return
        for event in aggregator.close(force=force):
            self._put(event)

    def pending(self) -> bool:
        """True while an aggregated use is not yet in an event put."""
        return self.aggregator is not None and self.aggregator.pending()

    def after_fork_in_child(self) -> None:
        """The parent's open windows stay the parent's (see Aggregator.after_fork)."""
        if self.aggregator is not None:
            self.aggregator.after_fork()
