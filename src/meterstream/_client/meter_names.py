"""Event names with no active meter, caught before their events are sent.

Stripe accepts an event whose name no active meter has, then bills nothing
for it and reports it later (``no_meter``). When the exporter can read the
meters (a :class:`MetersSource`, as the Stripe exporter is), a delivery thread
checks each name the first time a batch holds it, before that batch goes:
one WARNING per such name, and ``events_without_meter`` in ``stats()``
counts the events sent under it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, Callable, Optional

from meterstream._aggregate.meters import MetersSource
from meterstream._record.events import EventBatch

__all__ = ["MeterNames"]

logger = logging.getLogger("meterstream")

#: How old the meters read may be before a name they lack makes them read
#: again (a meter created since), and how long after a failed read to try again.
REREAD_AFTER = 60.0


class MeterNames:
    """Stripe's active meters by event name, read once and shared.

    Also a :class:`MetersSource` itself: the aggregation's check reads the
    same list, so the meters are read once for both.

    Args:
        source: what lists the meters (the client's exporter).
        clock: monotonic seconds (injected by tests).
    """

    def __init__(self, source: MetersSource, clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._clock = clock
        self._lock = threading.Lock()
        self._meters: Optional[list[dict[str, Any]]] = None
        #: When the meters may be read again (after a read, or a failed one).
        self._reread_at = float("-inf")
        self._read_error: Optional[str] = None
        #: Names checked, and those of them that no active meter has.
        self._checked: set[str] = set()
        self._missing: set[str] = set()
        #: Events handed to the exporter under a name in _missing.
        self.events_without_meter = 0

    def meters(self) -> list[dict[str, Any]]:
        """The meters, read at the first call (raises what the source raised)."""
        with self._lock:
            return list(self._read(force=False))

    def _read(self, *, force: bool) -> list[dict[str, Any]]:
        if self._meters is None or (force and self._clock() >= self._reread_at):
            self._reread_at = self._clock() + REREAD_AFTER
            self._meters = self._source.meters()
        return self._meters

    def before_send(self, batch: EventBatch) -> None:
        """A new batch is about to go: check its names not seen yet, count its events."""
        names = batch.event_names()
        distinct = set(names)
        if distinct <= self._checked and not (distinct & self._missing):
            return
        with self._lock:
            new = distinct - self._checked
            if new:
                self._check(new)
            missing = self._missing
            if missing:
                self.events_without_meter += sum(1 for name in names if name in missing)

    def _check(self, names: set[str]) -> None:
        if self._meters is None and self._clock() < self._reread_at:
            return  # the last read failed: not again before REREAD_AFTER
        try:
            active = _active_names(self._read(force=False))
            if names - active:
                # A meter may have been made since the list was read.
                active = _active_names(self._read(force=True))
        except Exception as exc:
            self._reread_at = self._clock() + REREAD_AFTER
            if self._read_error is None:
                logger.info(
                    "could not read the meters to check event names (%s); trying again in %d s",
                    exc,
                    REREAD_AFTER,
                )
            self._read_error = str(exc)
            return  # unchecked: the names are checked again at a later batch
        self._read_error = None
        for name in sorted(names - active):
            logger.warning(
                "no active meter has the event name %r: Stripe accepts its events "
                "but bills none of them (it reports them as 'no_meter'); create "
                "the meter, or fix the name (an emulator started with "
                "--auto-create-meters makes it at the first event)",
                name,
            )
            self._missing.add(name)
        self._checked.update(names)


def _active_names(meters: Iterable[dict[str, Any]]) -> set[str]:
    return {
        meter["event_name"]
        for meter in meters
        if meter.get("status", "active") == "active" and isinstance(meter.get("event_name"), str)
    }
