from __future__ import annotations

import json
import logging

from meterstream._exporters.base import EventBatch, Exporter

__all__ = ["LogExporter"]

events_logger = logging.getLogger("meterstream")


class LogExporter(Exporter):
    """Writes one JSON line per event to the ``meterstream`` logger at INFO.

    The default when no Stripe key is configured: a dry run you can read.
    Nothing reaches Stripe: ``stats()`` counts these events under ``"log"``,
    never ``"sent"``, and the client says so once at WARNING when it stands
    in for a missing key.
    """

    def export(self, events: EventBatch, batch_id: str = "") -> None:
        if not events_logger.isEnabledFor(logging.INFO):
            return
        for event in events:
            events_logger.info("meter event %s", json.dumps(event, separators=(",", ":")))
