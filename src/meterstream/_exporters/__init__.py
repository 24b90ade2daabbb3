"""Exporters receive batches of wire-shape events from the flusher."""

from __future__ import annotations

from .base import Exporter, RetryableExportError
from .log import LogExporter
from .memory import MemoryExporter
from .none import NoneExporter

__all__ = ["Exporter", "LogExporter", "MemoryExporter", "NoneExporter", "RetryableExportError"]
