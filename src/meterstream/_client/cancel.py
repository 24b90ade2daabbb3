"""``cancel()``: what a client decides for a cancellation, before anything is sent.

An event still waiting is withdrawn (no request); one on its way or accepted
is queued to the :class:`~meterstream._delivery.cancels.Canceller`, which
sends it after the event; what cannot be cancelled is refused at the call
(:class:`~meterstream.errors.CancelError`), with a spool from what its
history knows: whether it ever held the identifier, and when Stripe accepted
it. Without a spool an identifier the client no longer holds is sent, and
Stripe decides (its refusal comes through ``on_delivery_error``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

from meterstream._config.settings import Settings
from meterstream._delivery.cancels import Canceller, MemoryCancelStore
from meterstream._delivery.delivery import Delivery
from meterstream._exporters.base import Exporter
from meterstream._internal import RateLimitedLog
from meterstream._spool.spool import Spool
from meterstream.errors import CancelError, short_repr

__all__ = ["CANCEL_WINDOW", "Cancellations"]

#: Stripe cancels an event only within this long of receiving it.
CANCEL_WINDOW = 86400.0


class Cancellations:
    """One client's cancellations: the decision at the call, and their counts."""

    def __init__(
        self,
        settings: Settings,
        exporter: Exporter,
        delivery: Delivery,
        spool: Optional[Spool],
        log: RateLimitedLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._exporter = exporter
        self._delivery = delivery
        self._spool = spool
        self._log = log
        self._clock = clock
        self._lock = threading.Lock()
        self._counts = {"cancels_withdrawn": 0, "cancels_refused": 0}
        self._memory = MemoryCancelStore(clock) if spool is None else None
        store = spool.cancellations if spool is not None else self._memory
        assert store is not None
        self.sender = Canceller(exporter, settings, store, self._busy, log, withdraw=self._withdraw)
        if spool is not None and spool.cancellations.cancellations_pending():
            self.sender.start()  # what a previous process left

    def _busy(self, identifier: str) -> bool:
        return self._delivery.in_flight(identifier)

    def _withdraw(self, identifier: str) -> bool:
        """At send time: the event went back to wait (a failed attempt) meanwhile."""
        if self._spool is not None:
            return self._spool.cancellations.withdraw(identifier) == "withdrawn"
        return self._delivery.withdraw(identifier)

    def counters(self) -> dict[str, int]:
        with self._lock:
            counts = dict(self._counts)
        for key, value in self.sender.counters().items():
            counts[key] = counts.get(key, 0) + value
        return counts

    def cancel(self, identifier: object, event_name: object) -> Optional[str]:
        """Withdraw or queue the cancellation; ``"withdrawn"``, ``"queued"``, or
        None when refused (raised with ``raise_errors=True``)."""
        try:
            return self._decide(identifier, event_name)
        except CancelError as exc:
            with self._lock:
                self._counts["cancels_refused"] += 1
            if self._settings.raise_errors:
                raise
            self._log.log(logging.WARNING, "cancel:" + exc.reason, "cancel() refused: %s", exc)
            return None

    def _decide(self, identifier: object, event_name: object) -> Optional[str]:
        def refuse(reason: str, why: str) -> CancelError:
            return CancelError(why, reason=reason, identifier=identifier, event_name=event_name)

        if type(identifier) is not str or not identifier:
            raise refuse(
                "invalid", f"identifier: a non-empty string (got {short_repr(identifier)})"
            )
        if type(event_name) is not str or not event_name:
            raise refuse(
                "invalid", f"event_name: a non-empty string (got {short_repr(event_name)})"
            )
        aggregate = self._settings.aggregate or {}
        if event_name in aggregate:
            raise refuse(
                "aggregated",
                f"{event_name!r} is aggregated (aggregate={{{event_name!r}: "
                f"{aggregate[event_name]!r}}}): its uses have no event of their own to "
                "cancel; record a compensating use, or give the uses you may cancel an "
                "identifier= (they are then not aggregated)",
            )
        spool = self._spool
        if spool is not None:
            outcome = spool.cancellations.withdraw(identifier)
            if outcome == "withdrawn":
                return self._withdrawn(identifier, event_name)
            if outcome is None:
                accepted = spool.cancellations.accepted_event(identifier)
                if accepted is None:
                    raise refuse(
                        "unknown",
                        f"no event {identifier!r} was recorded in the spool {spool.path} "
                        "(or its history no longer holds it)",
                    )
                if accepted.event_name != event_name:
                    raise refuse(
                        "unknown",
                        f"the event {identifier!r} is a {accepted.event_name!r} event, "
                        f"not {event_name!r}",
                    )
                age = self._clock() - accepted.accepted_at
                if age >= CANCEL_WINDOW:
                    raise refuse(
                        "too_old",
                        f"Stripe accepted {identifier!r} {age / 3600:.1f} hours ago and cancels "
                        "events only within 24 hours of receiving them: correct the invoice "
                        "instead (a credit note or a credit grant)",
                    )
        elif self._delivery.withdraw(identifier):
            return self._withdrawn(identifier, event_name)
        if not self._exporter.supports_cancel:
            raise refuse(
                "unsupported",
                f"{identifier!r} was already delivered: {self._exporter.cancel_unsupported}",
            )
        self.sender.submit(identifier, event_name)
        return "queued"

    def _withdrawn(self, identifier: str, event_name: str) -> str:
        with self._lock:
            self._counts["cancels_withdrawn"] += 1
        if self._spool is not None:
            self._spool.cancellations.add_cancellation(identifier, event_name, "withdrawn")
        elif self._memory is not None:
            self._memory.add_cancellation(identifier, event_name, "withdrawn")
        return "withdrawn"

    def after_fork_in_child(self) -> None:
        if self._memory is not None:
            self._memory.reset()
        self._lock = threading.Lock()
        self.sender.after_fork_in_child()
