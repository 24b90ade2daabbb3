"""Exporters receive batches of wire-shape events from the flusher."""

from __future__ import annotations

from meterstream._exporters.base import Exporter, RetryableExportError
from meterstream._exporters.log import LogExporter
from meterstream._exporters.memory import MemoryExporter
from meterstream._exporters.none import NoneExporter

__all__ = ["Exporter", "LogExporter", "MemoryExporter", "NoneExporter", "RetryableExportError"]
