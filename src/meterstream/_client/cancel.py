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
from collections.abc import Mapping
from typing import Callable, Optional

from meterstream._config.settings import Settings
from meterstream._delivery.cancels import Canceller, MemoryCancelStore
from meterstream._delivery.delivery import Delivery
from meterstream._exporters.base import Exporter
from meterstream._internal import RateLimitedLog
from meterstream._spool.spool import Spool
from meterstream.errors import CancelError, short_repr

__all__ = ["CANCEL_WINDOW", "Cancellations", "cancel_everywhere"]

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
        """Whether the event is on its way: here, or in another live process's
        journal and not yet in the accepted history (its adjustment waits)."""
        if self._delivery.in_flight(identifier):
            return True
        return self._spool is not None and self._spool.held_by_another(identifier)

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
            return self.decide(identifier, event_name)
        except CancelError as exc:
            self.refused(exc)
            if self._settings.raise_errors:
                raise
            return None

    def refused(self, exc: CancelError, *, quiet: bool = False) -> None:
        """Count a refusal at the call, and log it unless it is raised (or *quiet*)."""
        with self._lock:
            self._counts["cancels_refused"] += 1
        if not quiet and not self._settings.raise_errors:
            self.log_refusal(exc)

    def log_refusal(self, exc: CancelError) -> None:
        self._log.log(logging.WARNING, "cancel:" + exc.reason, "cancel() refused: %s", exc)

    def decide(self, identifier: object, event_name: object) -> str:
        """Withdraw or queue the cancellation, uncounted if refused (a parallel
        run counts a refusal only at a destination that held the event).

        Raises:
            CancelError: the cancellation cannot be done here.
        """

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
        store = self._spool.cancellations if self._spool is not None else self._memory
        if store is not None and store.cancellation_state(identifier) == "withdrawn":
            return "withdrawn"  # cancelled twice: one cancellation
        spool = self._spool
        if spool is not None:
            standing = not self._exporter.supports_cancel
            outcome = spool.cancellations.withdraw(identifier, standing)
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
                self._check_supported(identifier, event_name)
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
        self._check_supported(identifier, event_name)
        self.sender.submit(identifier, event_name)
        return "queued"

    def _check_supported(self, identifier: str, event_name: str) -> None:
        if not self._exporter.supports_cancel:
            raise CancelError(
                f"{identifier!r} is no longer waiting to be sent (delivered, or on its way): "
                f"{self._exporter.cancel_unsupported}",
                reason="unsupported",
                identifier=identifier,
                event_name=event_name,
            )

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


def cancel_everywhere(
    lanes: Mapping[str, Cancellations], identifier: object, event_name: object
) -> Optional[str]:
    """A parallel run's ``cancel()``: the cancellation at every destination
    that received or holds the event (*lanes*: each destination's own).

    Each destination decides as it would alone, and what one can do is done
    whatever the others say: withdrawn where the event still waits, queued
    where it was accepted and the destination cancels (Stripe). A destination
    whose spool never held the event did not receive it: it is left out
    (``"not_held"``), unless no destination knows the event, which is the
    unknown-identifier refusal of one destination. Where one that received
    it cannot cancel (Metronome), the call is refused with a
    :class:`CancelError` whose ``outcomes`` say what each destination did:
    raised with ``raise_errors=True``; otherwise counted there, logged, and
    handed to ``on_delivery_error`` when another destination did cancel.

    Returns:
        ``"queued"`` when some destination queued it, ``"withdrawn"`` when
        every destination that held it withdrew it, None when refused.
    """
    outcomes: dict[str, str] = {}
    refusals: dict[str, CancelError] = {}
    for name, lane in lanes.items():
        try:
            outcomes[name] = lane.decide(identifier, event_name)
        except CancelError as exc:
            refusals[name] = exc
    first = next(iter(lanes.values()))
    settings = first._settings
    if not refusals:
        return "queued" if "queued" in outcomes.values() else "withdrawn"
    held = {name: exc for name, exc in refusals.items() if exc.reason != "unknown"}
    if outcomes and not held:  # the others never had it
        return "queued" if "queued" in outcomes.values() else "withdrawn"
    counted = held or refusals
    for name, refusal in counted.items():
        lanes[name].refused(refusal, quiet=True)
    for name in refusals:
        outcomes[name] = "refused" if name in counted else "not_held"
    outcomes = {name: outcomes[name] for name in lanes}
    reason = next(iter(counted.values())).reason
    if len(counted) > 1 and len({str(exc) for exc in counted.values()}) == 1:
        why = str(next(iter(counted.values())))  # the same at every destination
    else:
        why = "; ".join(f"{name}: {exc}" for name, exc in counted.items())
    done = [f"{outcome} at {name}" for name, outcome in outcomes.items() if outcome in _DONE]
    if done:
        why = f"{', '.join(done)}, but not everywhere: {why}"
    error = CancelError(
        why,
        reason=reason,
        identifier=identifier,
        event_name=event_name,
        outcomes=outcomes,
        refusals=counted,
    )
    if settings.raise_errors:
        raise error
    first.log_refusal(error)
    callback = settings.on_delivery_error
    if done and callback is not None:
        cancellations = [
            {
                "type": "cancel",
                "event_name": event_name,
                "identifier": identifier,
                "destination": name,
            }
            for name in counted
        ]
        try:
            callback(cancellations, error)
        except Exception as failure:
            first._log.log(logging.ERROR, "callback", "on_delivery_error raised %r", failure)
    return None


#: What a destination did when it took a cancellation.
_DONE = ("withdrawn", "queued")
