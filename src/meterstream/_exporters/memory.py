from __future__ import annotations

import threading

from meterstream._exporters.base import EventBatch, Exporter, WireEvent

__all__ = ["MemoryExporter"]


class MemoryExporter(Exporter):
    """Keeps every event it is sent, in order, in :attr:`events` (for tests).

    ``stats()`` counts these events under ``"memory"``, never ``"sent"``.
    """

    def __init__(self) -> None:
        self.events: list[WireEvent] = []
        self.batches = 0
        self._lock = threading.Lock()

    def export(self, events: EventBatch, batch_id: str = "") -> None:
        with self._lock:
            self.events.extend(events)
            self.batches += 1

    def clear(self) -> None:
        """Forget what was received."""
        with self._lock:
            self.events.clear()
            self.batches = 0

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<MemoryExporter events={len(self.events)}>"
