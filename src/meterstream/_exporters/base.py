from __future__ import annotations

import abc
from typing import Any, Optional

from .._events import EventBatch

__all__ = ["EventBatch", "Exporter", "RetryableExportError", "WireEvent"]

WireEvent = dict[str, Any]


class RetryableExportError(Exception):
    """A transient failure: the same batch may be sent again.

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
    """Where batches of events go.

    ``export`` is called from one thread at a time (the flusher, or the caller
    in ``sync_mode``) with at most ``batch_size`` wire-shape events. It returns
    when they were accepted; it raises :class:`RetryableExportError` for a
    failure worth retrying with the *same* events (they keep their
    identifiers), and :class:`meterstream.DeliveryError` when they were refused
    for good.
    """

    @abc.abstractmethod
    def export(self, events: EventBatch, batch_id: str = "") -> None:
        """Deliver *events*: a sequence of wire-shape dicts (``events.to_json()``
        gives the stream's request body); *batch_id* is the same on every retry."""

    def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once when the client shuts down."""

    def after_fork_in_child(self) -> None:  # noqa: B027 - optional hook
        """Drop state inherited from the parent process (connections, tokens)."""
