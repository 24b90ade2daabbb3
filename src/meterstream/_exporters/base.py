"""The public exporter protocol: where batches of events go."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, Optional

from meterstream._record.events import EventBatch
from meterstream.errors import DeliveryError

__all__ = ["EventBatch", "Exporter", "RetryableExportError", "WireEvent"]

WireEvent = dict[str, Any]


class RetryableExportError(Exception):
    """A transient failure: the same batch may be sent again.

    Raise it from :meth:`Exporter.export` when the events may not have
    arrived and sending them again is safe (they keep their identifiers, so
    a receiver that deduplicates by ``identifier`` counts them once).

    Attributes:
        retry_after: seconds the server asked us to wait, when it said.
        status: the HTTP status, when there was an answer.
    """

    def __init__(
        self, message: str, *, retry_after: Optional[float] = None, status: Optional[int] = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class Exporter(abc.ABC):
    """Where batches of events go: subclass it and implement :meth:`export`.

    Everything else has a default. The client calls, in this order:

    * :meth:`export` for each batch, from the delivery threads: up to
      :attr:`max_concurrency` calls at once, each with a different batch. In
      ``sync_mode`` (or where no thread can start) the threads that record
      or call ``flush()`` send instead, several at once if the application
      has several threads: ``export`` must be safe to call concurrently
      whatever :attr:`max_concurrency` says. A batch is never in two calls at
      once; its retries come after its previous attempt returned.
    * :meth:`after_fork_in_child` in a forked child, before the child sends.
    * :meth:`close` once, when the client shuts down, after the last export.

    :meth:`stats` is read whenever the client's ``stats()`` is.
    """

    #: How many calls of :meth:`export` the client may make at once, from
    #: different delivery threads (one thread per call). Set it above 1 only
    #: if ``export`` is thread-safe and sending in parallel helps (network
    #: round trips).
    max_concurrency: int = 1

    #: Whether :meth:`cancel` can take back an event this exporter delivered
    #: (Stripe's meter event adjustments can, within 24 hours). When False,
    #: ``cancel()`` of a delivered event is refused at the call with
    #: :attr:`cancel_unsupported` as the reason.
    supports_cancel: bool = False

    #: Why this exporter cannot cancel, and what to do instead (shown when
    #: :attr:`supports_cancel` is False).
    cancel_unsupported: str = "this exporter cannot cancel an event it delivered"

    @abc.abstractmethod
    def export(self, events: EventBatch, batch_id: str = "") -> None:
        """Deliver a batch; return once it was accepted.

        Args:
            events: at most ``batch_size`` events, in the order recorded:
                iterate it for wire-shape dicts (``event_name``,
                ``payload``, ``identifier``, ``timestamp``), or call
                ``events.to_json()`` for the stream's request body.
            batch_id: the same on every attempt of this batch, different for
                every other batch: an idempotency key for the receiver.

        Raises:
            RetryableExportError: a failure worth retrying with the *same*
                events (backoff with jitter, within ``max_retry_time``).
            meterstream.DeliveryError: the events were refused for good; they
                go to ``on_delivery_error`` and are counted as failed.

        Any other exception is logged as a fault of the exporter and the
        batch is retried, as for :class:`RetryableExportError`; it never
        reaches the application.
        """

    def cancel(self, event_name: str, identifier: str, request_id: str = "") -> None:
        """Take back an event this exporter delivered; return once accepted.

        Called from the client's cancellation thread, after the event itself
        was delivered, only when :attr:`supports_cancel` is True.

        Args:
            event_name: the event's name.
            identifier: the event's identifier.
            request_id: the same on every attempt of this cancellation: an
                idempotency key for the receiver.

        Raises:
            RetryableExportError: worth trying again (backoff with jitter,
                within ``max_retry_time``).
            meterstream.DeliveryError: refused for good (for example past the
                receiver's window); handed to ``on_delivery_error``.
        """
        raise DeliveryError(
            f"cannot cancel {identifier!r}: {self.cancel_unsupported}", reason="unsupported"
        )

    def stats(self) -> Mapping[str, int]:
        """Counters of this exporter, read whenever the client's ``stats()`` is.

        Override it to report your own; it must be cheap and thread-safe (it
        runs on the caller's thread while the delivery threads export).

        Returns:
            Counter names to values. The client's ``stats()`` reports
            ``sessions_opened`` and ``requests`` from it (0 when absent);
            the default is empty.
        """
        return {}

    def close(self) -> None:
        """Release connections and files; called once, when the client shuts down.

        Exporters written before ``close`` existed overrode :meth:`shutdown`:
        by default this calls it, so they keep working.
        """
        # Only when called as itself, not through super() from an override:
        # a class that overrides both, each calling super(), must not loop.
        if type(self).close is Exporter.close and type(self).shutdown is not Exporter.shutdown:
            self.shutdown()

    def shutdown(self) -> None:
        """The former name of :meth:`close`, kept as an alias: override
        :meth:`close` in new code. Calling either runs the one overridden."""
        if type(self).shutdown is Exporter.shutdown and type(self).close is not Exporter.close:
            self.close()

    def after_fork_in_child(self) -> None:  # noqa: B027 - optional hook
        """Drop state inherited from the parent process (connections, tokens, locks).

        Never close what the parent still uses: replace it.
        """
