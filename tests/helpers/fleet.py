"""Helpers for fleet tests: an in-process relay, reading the stream, metrics, polling."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional

from helpers import poll
from meterstream._config.settings import Settings
from meterstream._exporters.stripe import StripeExporter
from meterstream._exporters.stripe._api import StripeAPI
from meterstream._fleet.nats import NatsOptions
from meterstream._fleet.relay import Relay
from meterstream._fleet.relay_config import RelayConfig
from meterstream.emulator import Emulator

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

API_KEY = "sk_test_fleet"


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """The suite's one polling helper, with this folder's longer default timeout."""
    return poll.wait_for(predicate, timeout)


class RelayThread:
    """A Relay on its own asyncio loop in a thread of the test process."""

    def __init__(
        self,
        url: str,
        emulator: Emulator,
        *,
        meter_provider: Any = None,
        meters_base: Optional[str] = None,
        **config: Any,
    ) -> None:
        settings = Settings.resolve(
            {
                "api_key": API_KEY,
                "exporter": "stripe",
                "api_base": emulator.api_base,
                "stream_base": emulator.stream_base,
            }
        )
        config.setdefault("retry_initial_delay", 0.01)
        config.setdefault("retry_max_delay", 0.1)
        self.exporter = StripeExporter(settings)
        # With aggregate, the relay reads the meters: only sum meters fold.
        # meters_base: read the meters elsewhere (a Stripe that is down at first).
        meters = settings
        if meters_base is not None:
            meters = Settings.resolve(
                {"api_key": API_KEY, "exporter": "stripe", "api_base": meters_base}
            )
        self.api = StripeAPI.from_settings(meters) if config.get("aggregate") else None
        self.relay = Relay(
            RelayConfig(NatsOptions(url), **config),
            self.exporter,
            meter_provider=meter_provider,
            meters=self.api,
        )
        self.loop = asyncio.new_event_loop()
        self._stop: Optional[asyncio.Event] = None
        self.error: Optional[BaseException] = None
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            self._started.set()
            await self.relay.run(self._stop)

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # reported by stop()
            self.error = exc
        finally:
            self._started.set()
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

    def start(self) -> RelayThread:
        self.thread.start()
        self._started.wait(30)
        assert wait_for(lambda: self.relay.ready.is_set() or self.error is not None)
        assert self.error is None, self.error
        return self

    def stop(self) -> None:
        if self._stop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(60)
        self.exporter.shutdown()
        if self.api is not None:
            self.api.close()
        assert not self.thread.is_alive()
        assert self.error is None, self.error


async def stream_messages(url: str, subject: str, stream: str = "METERSTREAM") -> list[Any]:
    """Every message on *subject* in the stream (an ephemeral ordered read)."""
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await js.get_msg(stream, seq)
            except Exception:
                continue
            if msg.subject == subject or (
                subject.endswith(">") and msg.subject.startswith(subject[:-1])
            ):
                out.append(msg)
        return out
    finally:
        await nc.close()


def read_stream(url: str, subject: str, stream: str = "METERSTREAM") -> list[Any]:
    return asyncio.run(stream_messages(url, subject, stream))


async def _publish_raw(url: str, subject: str, payloads: list[bytes]) -> None:
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for body in payloads:
            await js.publish(subject, body)
    finally:
        await nc.close()


def publish_raw(url: str, subject: str, payloads: list[bytes]) -> None:
    asyncio.run(_publish_raw(url, subject, payloads))


def metric_sums(reader: InMemoryMetricReader) -> dict[str, Any]:
    """Each metric the reader collected, its data points summed, by name."""
    data = reader.get_metrics_data()
    out: dict[str, Any] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out[metric.name] = sum(p.value for p in metric.data.data_points)
    return out
