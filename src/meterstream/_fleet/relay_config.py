"""How one relay process runs (its flags) and what it reports (its OpenTelemetry counters)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meterstream._fleet.nats import NatsOptions

__all__ = ["RelayConfig", "relay_metrics"]


@dataclass
class RelayConfig:
    """How one relay process runs (the CLI's flags)."""

    options: NatsOptions
    workers: int = 2
    batch_size: int = 100
    max_rps: int = 0  # 0: no shared budget
    durable: str = "meterstream-relay"
    ack_wait: float = 60.0
    max_ack_pending: int = 20_000
    fetch_timeout: float = 1.0
    max_retry_time: float = 300.0
    retry_initial_delay: float = 0.5
    retry_max_delay: float = 20.0
    drain_timeout: float = 10.0
    budget_bucket: str = field(default="")
    #: ``{event_name: "sum"}``: aggregate these names' uses across the fleet (``--aggregate``).
    aggregate: dict[str, str] = field(default_factory=dict)
    aggregation_window: int = 5
    #: Messages a worker takes per fetch when aggregating: many uses make few events.
    aggregate_batch: int = 1000


def relay_metrics(provider: Any = None) -> dict[str, Any]:
    """OpenTelemetry counters (API only: no-ops unless the app set up an SDK)."""
    try:
        from opentelemetry import metrics
    except ImportError:  # pragma: no cover - opentelemetry-api is a dependency
        return {}
    meter = metrics.get_meter("meterstream.relay", meter_provider=provider)
    return {
        "fetched": meter.create_counter("meterstream.relay.fetched", unit="{event}"),
        "sent": meter.create_counter("meterstream.relay.sent", unit="{event}"),
        "requests": meter.create_counter("meterstream.relay.requests", unit="{request}"),
        "retried": meter.create_counter("meterstream.relay.retried", unit="{event}"),
        "dead_lettered": meter.create_counter("meterstream.relay.dead_lettered", unit="{event}"),
        "handed_back": meter.create_counter("meterstream.relay.handed_back", unit="{event}"),
        "invalid": meter.create_counter("meterstream.relay.invalid", unit="{message}"),
        "folded_uses": meter.create_counter("meterstream.relay.folded_uses", unit="{use}"),
        "folded_events": meter.create_counter("meterstream.relay.folded_events", unit="{event}"),
        "fold_refused": meter.create_counter("meterstream.relay.fold_refused", unit="{event}"),
    }
