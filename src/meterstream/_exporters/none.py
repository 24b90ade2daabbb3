from __future__ import annotations

from .base import Exporter, WireEvent

__all__ = ["NoneExporter"]


class NoneExporter(Exporter):
    """Discards every event (metering wired up, delivery off)."""

    def export(self, events: list[WireEvent], batch_id: str = "") -> None:
        return None
