from __future__ import annotations

from meterstream._exporters.base import EventBatch, Exporter

__all__ = ["NoneExporter"]


class NoneExporter(Exporter):
    """Discards every event (metering wired up, delivery off).

    ``stats()`` counts them under ``"none"``, never ``"sent"``.
    """

    def export(self, events: EventBatch, batch_id: str = "") -> None:
        return None
