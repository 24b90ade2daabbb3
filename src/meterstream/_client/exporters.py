"""Which exporter a client's settings name, and where ``stats()`` counts what it took."""

from __future__ import annotations

from typing import TYPE_CHECKING

from meterstream._exporters.base import Exporter
from meterstream._exporters.log import LogExporter
from meterstream._exporters.memory import MemoryExporter
from meterstream._exporters.none import NoneExporter
from meterstream._internal import logger
from meterstream.errors import ConfigurationError

if TYPE_CHECKING:
    from meterstream._config.settings import Settings

__all__ = ["accepted_key", "make_exporter"]


def make_exporter(settings: Settings) -> Exporter:
    """The exporter *settings* name (``exporter``), or the user's own instance.

    Raises:
        ConfigurationError: neither a known name nor an :class:`Exporter`.
    """
    exporter = settings.exporter
    if isinstance(exporter, Exporter):
        return exporter
    if not isinstance(exporter, str):
        raise ConfigurationError(f"exporter: expected a name or an Exporter, got {exporter!r}")
    if exporter == "memory":
        return MemoryExporter()
    if exporter == "log":
        return LogExporter()
    if exporter == "none":
        return NoneExporter()
    if exporter == "stripe":
        from meterstream._exporters.stripe import StripeExporter

        return StripeExporter(settings)
    if exporter == "metronome":
        if not settings.metronome_api_key:
            # A dry run, as with no Stripe key: what would be sent, logged.
            logger.warning(
                "exporter='metronome' has no metronome_api_key (or METRONOME_BEARER_TOKEN): "
                "a dry run, events are logged, not sent"
            )
            return LogExporter()
        from meterstream._exporters.metronome import MetronomeExporter

        return MetronomeExporter(settings)
    if exporter == "nats":
        from meterstream._fleet.exporter import NatsExporter  # no nats-py import until one is made

        return NatsExporter.from_settings(settings)
    raise ConfigurationError(f"exporter: unknown exporter {exporter!r}")  # pragma: no cover


def accepted_key(exporter: Exporter) -> str:
    """Where ``stats()`` counts what *exporter* accepted.

    "sent" is Stripe's (or the user's own exporter's) word; the local
    exporters count under their own name, so a missing key never looks like
    billing, and JetStream's acceptance is "published", not billed.
    """
    if isinstance(exporter, LogExporter):
        return "log"
    if isinstance(exporter, MemoryExporter):
        return "memory"
    if isinstance(exporter, NoneExporter):
        return "none"
    from meterstream._fleet.exporter import NatsExporter  # no nats-py import until one is made

    if isinstance(exporter, NatsExporter):
        return "published"
    return "sent"
