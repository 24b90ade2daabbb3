"""A parallel run: ``destinations=["stripe", "metronome"]``, one use sent to each.

A :class:`ParallelClient` owns one ordinary :class:`MeterClient` per
destination, its *lane*: its own buffer (or spool), delivery threads,
exporter, retries, dead letters and counts. A use is checked once for what
must be the same at every destination (the identifier and the timestamp are
made here, so Stripe and Metronome see one ``identifier`` / ``transaction_id``
and one time), then handed to each lane in turn; nothing a lane does after
accepting it (sending, waiting out an outage, retrying, refusing) involves
the others. A lane is a whole client: it shuts down at exit, survives a fork
and reports its OpenTelemetry metrics, under this client's name, with its
destination.

A single-destination client never comes here: its record path is
:class:`MeterClient`'s, unchanged.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any, Optional

from meterstream._client import live as _live_clients
from meterstream._client.cancel import cancel_everywhere
from meterstream._client.client import MeterClient
from meterstream._config.metronome import STAND_INS
from meterstream._config.settings import Settings
from meterstream._exporters.memory import MemoryExporter
from meterstream._record import events as _events
from meterstream._record.baggage import Baggage
from meterstream._spool import location as spool_location
from meterstream._truth.webhooks import ValidationReport
from meterstream.errors import InvalidEventError

__all__ = ["ParallelClient", "lane_spool_path"]

_time = time.time
#: stats() keys counted once for the whole process: shown, not summed.
_PROCESS_WIDE = ("otel_errors",)


def lane_spool_path(spool_path: str, destinations: tuple[str, ...], destination: str) -> str:
    """The spool of *destination* in a parallel run with ``spool_path`` set.

    The first destination keeps ``spool_path`` itself (what a single-exporter
    client used goes on being delivered, and its history stays where
    ``meterstream reconcile`` reads it); each other one gets
    ``<stem>.<destination><suffix>``: ``meter.db`` -> ``meter.metronome.db``.
    """
    if destination == destinations[0]:
        return spool_path
    stem, suffix = os.path.splitext(spool_path)
    return f"{stem}.{destination}{suffix}"


class ParallelClient(MeterClient):
    """A client whose every use goes to several destinations (``destinations``).

    Made by ``MeterClient(destinations=[...])`` (or ``configure``) when two or
    more destinations are named; see :mod:`meterstream._client.parallel`.

    Attributes:
        destinations: each destination's own client, by destination name.
    """

    def __init__(self, **settings: Any) -> None:
        self._settings = s = Settings.resolve(settings)
        self.active = s.enabled
        self._disabled = s.disabled_events
        self._raise = s.raise_errors
        self._on_missing = s.on_missing_customer
        self._closed = False
        self.name = _live_clients.new_client_name()
        #: Names whose uses are aggregated: identifier and time are left to
        #: each lane (an aggregated use has neither of its own).
        self._aggregated = frozenset(s.aggregate)
        self.destinations: dict[str, MeterClient] = {}
        stand_in = s.exporter if s.exporter in STAND_INS else None
        # "auto" is resolved once, so each destination's spool is derived from
        # the one location (meter.db, meter.metronome.db), each with its journal.
        spool_path = spool_location.chosen(s.spool_path, s.spool_app) if s.enabled else None
        try:
            for destination in s.destinations:
                lane = dict(settings)
                lane["destinations"] = ()
                lane["exporter"] = stand_in or destination
                if stand_in == "memory" and destination == "metronome":
                    # A test's Metronome refuses to cancel, as Metronome does
                    # (imported here: httpx only once something needs it).
                    from meterstream._exporters.metronome import CANNOT_CANCEL

                    lane["exporter"] = MemoryExporter(cannot_cancel=CANNOT_CANCEL)
                if spool_path:
                    lane["spool_path"] = lane_spool_path(spool_path, s.destinations, destination)
                elif s.spool_path:
                    lane["spool_path"] = None  # "auto" where nothing can be written: memory
                client = MeterClient(**lane)
                client.name = self.name
                client.destination = destination
                self.destinations[destination] = client
        except BaseException:
            for client in self.destinations.values():
                client.shutdown(0)
            raise
        first = next(iter(self.destinations.values()))
        #: The first destination's exporter and spool (each lane has its own:
        #: ``destinations[name].exporter`` / ``.spool``).
        self.exporter = first.exporter
        self.spool = first.spool
        self.destination = ",".join(s.destinations)
        self._lanes = tuple(self.destinations.values())
        self._baggage: Baggage = first._baggage
        #: ``@meter``'s constant-value path: the checked one, at every destination.
        self.record_constant = self._record_constant_general

    def __repr__(self) -> str:
        names = list(self.destinations)
        return f"<MeterClient enabled={self.active} destinations={names!r}>"

    # -- recording: the Recorder contract and record() --------------------------------

    def _shared(
        self, event_name: Any, identifier: Optional[str], timestamp: Any
    ) -> tuple[Optional[str], Any]:
        """The identifier and time every destination gets for one use."""
        if event_name in self._aggregated or (identifier is not None and timestamp is not None):
            return identifier, timestamp
        if identifier is None:
            identifier = _events.identifier_prefix() + str(_events.next_sequence())
        if timestamp is None:
            timestamp = _time()
        return identifier, timestamp

    def record(
        self,
        event_name: str,
        value: Any = 1,
        *,
        customer: Optional[str] = None,
        identifier: Optional[str] = None,
        dimensions: Optional[Mapping[str, str]] = None,
        timestamp: Any = None,
    ) -> Optional[str]:
        """Record one use now, at every destination (see :meth:`MeterClient.record`).

        Returns:
            The identifier every destination got (keep it to :meth:`cancel`
            the use), or None when no destination recorded it.
        """
        if not self.active:
            return None
        identifier, timestamp = self._shared(event_name, identifier, timestamp)
        recorded: Optional[str] = None
        for lane in self._lanes:
            ident = lane.record(
                event_name,
                value,
                customer=customer,
                identifier=identifier,
                dimensions=dimensions,
                timestamp=timestamp,
            )
            recorded = recorded or ident
        return recorded

    def record_use(
        self,
        event_name: str,
        value: Any,
        customer: Optional[str],
        identifier: Optional[str],
        dimensions: Optional[dict[str, str]],
        timestamp: Any,
    ) -> Optional[str]:
        """Check and record one use at every destination (see :meth:`MeterClient.record_use`).

        Returns:
            The identifier every destination got, or None when none recorded it.
        """
        if self._disabled and event_name in self._disabled:
            return None
        identifier, timestamp = self._shared(event_name, identifier, timestamp)
        recorded: Optional[str] = None
        for lane in self._lanes:
            ident = lane.record_use(event_name, value, customer, identifier, dimensions, timestamp)
            recorded = recorded or ident
        return recorded

    def cancel(self, identifier: str, event_name: str) -> Optional[str]:
        """Take back a recorded use at every destination that received or holds it.

        Where the event still waits it is withdrawn (no request, at any
        destination); where it was accepted it is cancelled if that
        destination can (Stripe), and where it cannot (Metronome) the call is
        refused, after the others did what they can: see
        :func:`meterstream._client.cancel.cancel_everywhere` and
        docs/corrections.md.

        Returns:
            ``"queued"`` (cancelled at some destination after sending),
            ``"withdrawn"`` (removed everywhere before it was sent), or None
            when refused and ``raise_errors`` is off.

        Raises:
            CancelError: with ``raise_errors=True``; its ``outcomes`` say what
                each destination did.
        """
        if not self.active:
            return None
        for lane in self._lanes:
            if not lane._path.canary[0]:
                lane._check_fork()
        return cancel_everywhere(
            {name: lane._cancels for name, lane in self.destinations.items()},
            identifier,
            event_name,
        )

    def _record_constant_general(
        self,
        event_name: str,
        value: Any,
        customer: Optional[str],
        dimensions: Optional[dict[str, str]],
    ) -> None:
        self.record_use(event_name, value, customer, None, dimensions, None)

    def invalid(self, exc: InvalidEventError, event_name: Any) -> None:
        """Bad input: raised (``raise_errors``), else counted at every destination."""
        if self._raise:
            raise exc
        for lane in self._lanes:
            lane.invalid(exc, event_name)

    def _watch_uses(self, sink: Any) -> None:
        """A watcher of the uses the first destination accepts (each lane has its own)."""
        self._lanes[0]._watch_uses(sink)

    def refresh_otel(self) -> None:
        """Each lane decides OpenTelemetry's auto mode on its own delivery ticks."""
        for lane in self._lanes:
            lane.refresh_otel()

    def _after_fork_in_child(self) -> None:
        """The lanes are live clients themselves: the fork hooks reset each."""

    # -- lifecycle ----------------------------------------------------------------------

    def _each(self, method: str, timeout: Optional[float]) -> bool:
        """Call ``flush`` or ``shutdown`` on every lane at once: a destination
        that is down uses up its own wait, never the others'."""
        results: dict[str, bool] = {}

        def run(name: str, lane: MeterClient) -> None:
            results[name] = bool(getattr(lane, method)(timeout))

        threads = [
            threading.Thread(target=run, args=item, name=f"meterstream-{method}-{item[0]}")
            for item in self.destinations.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return all(results.get(name, False) for name in self.destinations)

    def flush(self, timeout: Optional[float] = 5.0) -> bool:
        """Settle what every destination holds (see :meth:`MeterClient.flush`).

        Returns:
            True when every destination settled everything recorded before
            the call within *timeout* (the destinations wait side by side).
        """
        if not self.active:
            return True
        return self._each("flush", timeout)

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Shut every destination down, side by side (see :meth:`MeterClient.shutdown`)."""
        if self._closed:
            return True
        self._closed = True
        return self._each("shutdown", timeout)

    def stats(self) -> dict[str, Any]:
        """Counts per destination, and their sums.

        Returns:
            ``destinations``: each destination's own :meth:`MeterClient.stats`,
            by name; every other key is the sum of that key over the
            destinations (so ``recorded`` counts a use once per destination,
            and ``sent`` what all of them accepted), except ``otel_errors``,
            one count for the process.
        """
        per = {name: lane.stats() for name, lane in self.destinations.items()}
        total: dict[str, Any] = {}
        for counts in per.values():
            for key, value in counts.items():
                total[key] = total.get(key, 0) + value
        for key in _PROCESS_WIDE:  # one count for the process, not per destination
            if key in total:
                total[key] = max(counts.get(key, 0) for counts in per.values())
        total["destinations"] = per
        return total

    # -- Stripe's asynchronous error reports: the Stripe destination's ---------------------

    def report_validation_errors(self, report: ValidationReport) -> None:
        """Stripe's error report, taken by the Stripe destination (see
        :meth:`MeterClient.report_validation_errors`)."""
        lane = self.destinations.get("stripe", self._lanes[0])
        lane.report_validation_errors(report)


MeterClient.parallel_class = ParallelClient
