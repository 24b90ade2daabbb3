"""The Metronome exporter: ``POST /v1/ingest``, and the reads reconciliation needs.

* :mod:`._exporter`: :class:`MetronomeExporter`, which sends batches and sorts
  the answers;
* :mod:`._wire`: a batch as Metronome's usage events (``transaction_id``,
  ``customer_id``, ``event_type``, ``timestamp``, ``properties``);
* :mod:`._errors`: what an answer means (error bodies, retry verdicts and
  the ``retry-after-ms`` / ``retry-after`` headers the official SDK honours),
  and :data:`CANNOT_CANCEL`, why ``cancel()`` is refused here;
* :mod:`._api`: a small client of the usage, customer and billable metric
  endpoints, for the CLI and reconciliation.
"""

from __future__ import annotations

from meterstream._exporters.metronome._api import MetronomeAPI
from meterstream._exporters.metronome._errors import CANNOT_CANCEL
from meterstream._exporters.metronome._exporter import MetronomeExporter

__all__ = ["CANNOT_CANCEL", "MetronomeAPI", "MetronomeExporter"]
