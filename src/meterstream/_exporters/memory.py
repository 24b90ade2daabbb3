from __future__ import annotations

import threading
from typing import Optional

from meterstream._exporters.base import EventBatch, Exporter, WireEvent

__all__ = ["MemoryExporter"]


class MemoryExporter(Exporter):
    """Keeps every event it is sent, in order, in :attr:`events` (for tests).

    ``stats()`` counts these events under ``"memory"``, never ``"sent"``.
    Cancellations of events it was sent are kept, in order, in
    :attr:`cancellations` (``{"event_name", "identifier"}`` dicts); the
    events stay in :attr:`events`, as a meter keeps its history.

    Args:
        cannot_cancel: stand in for a destination that cannot cancel
            (Metronome, in a parallel run's tests): ``cancel()`` of a
            delivered event is refused with this reason, as it would be there.
    """

    supports_cancel = True

    def __init__(self, cannot_cancel: Optional[str] = None) -> None:
        if cannot_cancel is not None:
            self.supports_cancel = False
            self.cancel_unsupported = cannot_cancel
        self.events: list[WireEvent] = []
        self.cancellations: list[dict[str, str]] = []
        self.batches = 0
        self._lock = threading.Lock()

    def export(self, events: EventBatch, batch_id: str = "") -> None:
        with self._lock:
            self.events.extend(events)
            self.batches += 1

    def cancel(self, event_name: str, identifier: str, request_id: str = "") -> None:
        with self._lock:
            self.cancellations.append({"event_name": event_name, "identifier": identifier})

    def clear(self) -> None:
        """Forget what was received."""
        with self._lock:
            self.events.clear()
            self.cancellations.clear()
            self.batches = 0

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<MemoryExporter events={len(self.events)}>"
