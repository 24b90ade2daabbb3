"""The relay: JetStream -> Stripe, for a fleet (``meterstream relay``).

Any number of relay processes share one durable pull consumer. Each worker
fetches up to ``batch_size`` messages, sets aside those that are not valid
events (to ``<stream>.dead`` with the reason), sends the rest to Stripe with
meterstream's Stripe exporter (sessions, identifiers, the shared pace of
retries) under the fleet-wide request budget, and acknowledges a message
only once Stripe accepted its event. A refused event goes to the dead-letter
subject with Stripe's reason; events still failing after ``max_retry_time``
are handed back (nak) for any relay to try again. A relay that dies leaves
its unacknowledged messages to be redelivered to the others after
``ack_wait``.

With ``aggregate`` (``--aggregate``) a worker takes up to ``aggregate_batch``
messages and aggregates the uses of sum meters first (:mod:`.aggregate`), the
aggregation decided once for the whole fleet in JetStream before anything is sent
(:mod:`.aggregate_log`). While a batch is in flight its messages are kept
from redelivery with ``in_progress``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from typing import Any, Optional

from meterstream._aggregate.meters import MetersSource
from meterstream._delivery.pacing import Backoff, Pacer
from meterstream._exporters.base import Exporter, RetryableExportError
from meterstream._fleet.aggregate import AggregateRules, Unit
from meterstream._fleet.aggregate_log import FleetAggregator
from meterstream._fleet.budget import SharedBudget
from meterstream._fleet.messages import check_message, pack_units
from meterstream._fleet.nats import DEAD_REASON_HEADER, connect, ensure_stream
from meterstream._fleet.relay_config import RelayConfig, relay_metrics
from meterstream._record.events import EventBatch
from meterstream.errors import DeliveryError

__all__ = ["Relay"]

log = logging.getLogger("meterstream.relay")


class Relay:
    """One relay process's workers. Run with :meth:`run` on an asyncio loop.

    Args:
        config: the flags.
        exporter: where batches go: a Stripe exporter (sessions, retries' answers).
        meter_provider: an OpenTelemetry MeterProvider; the global one by default.
        meters: what lists Stripe's meters (``GET /v1/billing/meters``), for
            ``aggregate``: only names whose meter sums are aggregated.
    """

    def __init__(
        self,
        config: RelayConfig,
        exporter: Exporter,
        *,
        meter_provider: Any = None,
        meters: Optional[MetersSource] = None,
    ) -> None:
        self.config = config
        self.exporter = exporter
        self._meters = meters
        self._pacer = Pacer(
            Backoff(config.retry_initial_delay, config.retry_max_delay), 2 * config.workers
        )
        self._never = threading.Event()
        self._counts = {
            "fetched": 0,
            "sent": 0,
            "requests": 0,
            "retried": 0,
            "dead_lettered": 0,
            "invalid": 0,
            "handed_back": 0,
            "folded_uses": 0,
            "folded_events": 0,
            "fold_refused": 0,
        }
        self._budget: Optional[SharedBudget] = None
        self._nc: Any = None
        self._js: Any = None
        self._held: dict[int, list[Any]] = {}
        self._aggregator: Optional[FleetAggregator] = None
        self._fetch_size = config.aggregate_batch if config.aggregate else config.batch_size
        #: Which names aggregate (``aggregate``), once the meters were read at start.
        self.aggregate_rules: Optional[AggregateRules] = None
        self.ready = asyncio.Event()
        self._otel = relay_metrics(meter_provider)

    def stats(self) -> dict[str, int]:
        """Counters since start: fetched, sent, requests, retried, dead_lettered, ..."""
        out = dict(self._counts)
        out["budget_waits"] = self._budget.waits if self._budget else 0
        return out

    def _count(self, name: str, n: int = 1) -> None:
        self._counts[name] += n
        counter = self._otel.get(name)
        if counter is not None:
            counter.add(n)

    # -- running ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until *stop* is set, then finish in-flight batches and hand back the rest."""
        cfg = self.config
        self._nc = await connect(cfg.options, name=f"meterstream-relay-{cfg.durable}")
        try:
            self._js = self._nc.jetstream(timeout=10.0)
            await ensure_stream(self._js, cfg.options)
            if cfg.max_rps:
                bucket = cfg.budget_bucket or f"{cfg.options.stream}_budget"
                self._budget = SharedBudget(self._js, bucket, cfg.max_rps)
                await self._budget.setup()
            if cfg.aggregate:
                await self._start_aggregator(stop)
                if stop.is_set():
                    return
            subs = [await self._subscribe() for _ in range(cfg.workers)]
            log.info(
                "relay started: stream %s, consumer %s, %d workers, budget %s",
                cfg.options.stream,
                cfg.durable,
                cfg.workers,
                f"{cfg.max_rps} requests/s" if cfg.max_rps else "none",
            )
            self.ready.set()
            tasks = [
                asyncio.create_task(self._work(i, sub, stop), name=f"relay-worker-{i}")
                for i, sub in enumerate(subs)
            ]
            await stop.wait()
            log.info("relay stopping: finishing batches in flight")
            _, late = await asyncio.wait(tasks, timeout=cfg.drain_timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            for msgs in self._held.values():  # batches cut short: any relay may take them
                await self._hand_back(msgs, 0.0)
            log.info("relay stopped: %s", self.stats())
        finally:
            if self._aggregator is not None:
                await self._aggregator.stop()
            # Not drain(): it waits out pull requests still open on the server.
            try:
                await self._nc.flush(timeout=5)  # the last acknowledgements
            except Exception:
                pass
            await self._nc.close()

    async def _start_aggregator(self, stop: asyncio.Event) -> None:
        """Read Stripe's meters (only sum meters aggregate), then start reading aggregate records.

        Until the meters can be read the relay does not start: every relay
        must aggregate the same names, or a use redelivered from one relay to
        another could go out both aggregated and on its own.
        """
        cfg = self.config
        meters = await asyncio.to_thread(self._read_meters)
        pause = 1.0
        while meters is None and self._meters is not None and not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), pause)
            except asyncio.TimeoutError:
                pass
            pause = min(pause * 2, 30.0)
            meters = await asyncio.to_thread(self._read_meters)
        if stop.is_set():
            return
        rules = AggregateRules.from_meters(sorted(cfg.aggregate), cfg.aggregation_window, meters)
        for name, reason in sorted(rules.refused.items()):
            log.warning("will not aggregate %r: %s; its uses are sent one event each", name, reason)
        self.aggregate_rules = rules
        self._aggregator = FleetAggregator(
            self._js, cfg.options.stream, cfg.durable, rules, replicas=cfg.options.replicas
        )
        await self._aggregator.start()
        log.info(
            "aggregating %s in %d-second windows",
            ", ".join(sorted(rules.value_keys)) or "nothing",
            cfg.aggregation_window,
        )

    def _read_meters(self) -> Optional[list[dict[str, Any]]]:
        if self._meters is None:
            return None
        try:
            return list(self._meters.meters())
        except Exception as exc:
            log.warning(
                "could not read the meters to check that %s sum (%s); the relay starts once it can",
                ", ".join(sorted(self.config.aggregate)),
                exc,
            )
            return None

    async def _subscribe(self) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig

        cfg = self.config
        config = ConsumerConfig(
            durable_name=cfg.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=cfg.ack_wait,
            max_ack_pending=cfg.max_ack_pending,
            filter_subject=f"{cfg.options.stream}.events.>",
            max_deliver=-1,
        )
        return await self._js.pull_subscribe(
            f"{cfg.options.stream}.events.>",
            durable=cfg.durable,
            stream=cfg.options.stream,
            config=config,
        )

    async def _work(self, number: int, sub: Any, stop: asyncio.Event) -> None:
        import nats.errors

        while not stop.is_set():
            try:
                msgs = await sub.fetch(self._fetch_size, timeout=self.config.fetch_timeout)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue  # nothing to take within fetch_timeout
            except Exception as exc:  # disconnected, a leader election, ...
                log.warning("fetching from JetStream failed: %s: %s", type(exc).__name__, exc)
                try:
                    await asyncio.wait_for(stop.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass
                continue
            self._count("fetched", len(msgs))
            self._held[number] = msgs
            try:
                await self._relay(msgs, stop)
            finally:
                self._held.pop(number, None)

    async def _relay(self, msgs: list[Any], stop: asyncio.Event) -> None:
        good: list[Any] = []
        events: list[dict[str, Any]] = []
        for msg in msgs:
            event, problem = check_message(msg.data)
            if event is None:
                self._count("invalid")
                await self._dead_letter([msg], f"invalid event: {problem}")
            else:
                good.append(msg)
                events.append(event)
        started = time.monotonic()
        keepalive = asyncio.create_task(self._keep_alive(msgs))
        try:
            units = await self._units(good, events)
            parts = pack_units(units, self.config.batch_size)
            while parts:
                parts[:0] = await self._deliver(parts.pop(0), stop, started)
        finally:
            keepalive.cancel()

    async def _units(self, msgs: list[Any], events: list[dict[str, Any]]) -> list[Unit]:
        """What to send for these messages: one event each, or aggregated events (--aggregate)."""
        rules = self.aggregate_rules
        if self._aggregator is None or rules is None:
            return [Unit([event], [msg]) for msg, event in zip(msgs, events)]
        units: list[Unit] = []
        aggregatable: list[tuple[Any, dict[str, Any]]] = []
        for msg, event in zip(msgs, events):
            if rules.group_of(event) is not None:
                aggregatable.append((msg, event))
            else:
                if event["event_name"] in rules.refused:
                    self._count("fold_refused")
                units.append(Unit([event], [msg]))
        if aggregatable:
            try:
                aggregated, undecided = await self._aggregator.plan(aggregatable)
            except Exception as exc:  # NATS unreachable, a leader election, ...
                log.warning("could not record the aggregation: %s: %s", type(exc).__name__, exc)
                aggregated, undecided = [], [msg for msg, _ in aggregatable]
            if undecided:
                await self._hand_back(undecided, self.config.retry_max_delay)
            units.extend(aggregated)
        await self._aggregator.maybe_prune()
        return units

    async def _keep_alive(self, msgs: list[Any]) -> None:
        """Tell JetStream, while a batch is in flight, that its messages are still ours."""
        while True:
            await asyncio.sleep(self.config.ack_wait / 3)
            for msg in msgs:
                try:
                    await msg.in_progress()
                except Exception:  # settled meanwhile, or disconnected
                    pass

    async def _deliver(
        self, units: list[Unit], stop: asyncio.Event, started: float
    ) -> list[list[Unit]]:
        """Send one batch until Stripe took it; the parts still to send after a 400."""
        msgs = [msg for unit in units for msg in unit.msgs]
        events = [event for unit in units for event in unit.events]
        batch = EventBatch.of(events)
        batch_id = hashlib.sha256("\n".join(e["identifier"] for e in events).encode())
        attempt = 0
        while True:
            if self._budget is not None:
                await self._budget.acquire()
            if self._pacer.closed:
                await asyncio.to_thread(self._pacer.wait_turn, self._never)
            attempt += 1
            self._count("requests")
            try:
                await asyncio.to_thread(self.exporter.export, batch, batch_id.hexdigest()[:32])
            except RetryableExportError as exc:
                self._pacer.failed(exc.retry_after)
                self._count("retried", len(msgs))
                if stop.is_set() or time.monotonic() - started > self.config.max_retry_time:
                    log.warning("handing back %d events: %s", len(msgs), exc)
                    await self._hand_back(msgs, self.config.retry_max_delay)
                    return []
                delay = max(self._pacer.retry_delay(attempt), exc.retry_after or 0.0)
                await self._keep(msgs, delay, stop)
                continue
            except DeliveryError as exc:
                if exc.reason != "rejected" or exc.status != 400:
                    # The key or the account, not the events: hand them back and wait.
                    log.error("Stripe refused the relay's requests: %s", exc)
                    self._pacer.failed(None)
                    await self._hand_back(msgs, self.config.retry_max_delay)
                    return []
                return await self._refused(units, exc)
            self._pacer.succeeded()
            for msg in msgs:
                await msg.ack()
            self._count("sent", len(events))
            for unit in units:
                if unit.aggregated:
                    self._count("folded_uses", len(unit.msgs))
                    self._count("folded_events", len(unit.events))
            return []

    async def _refused(self, units: list[Unit], exc: DeliveryError) -> list[list[Unit]]:
        """A 400: dead-letter what the event it names stands for and resend the rest, or bisect."""
        if exc.index is None and len(units) > 1:
            half = len(units) // 2
            return [units[:half], units[half:]]
        index = exc.index if exc.index is not None else 0
        at, seen = 0, 0
        for at, unit in enumerate(units):  # noqa: B007 - *at* is used after the loop
            if index < seen + len(unit.events):
                break
            seen += len(unit.events)
        reason = f"stripe: {exc.code or exc.status}: {exc}"[:500]
        await self._dead_letter(units[at].msgs, reason)
        rest = units[:at] + units[at + 1 :]
        return [rest] if rest else []

    async def _keep(self, msgs: list[Any], delay: float, stop: asyncio.Event) -> None:
        """Wait *delay* before a retry, telling JetStream the messages are still ours."""
        deadline = time.monotonic() + delay
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(stop.wait(), min(left, self.config.ack_wait / 3))
            except asyncio.TimeoutError:
                for msg in msgs:
                    await msg.in_progress()

    async def _hand_back(self, msgs: list[Any], delay: float) -> None:
        self._count("handed_back", len(msgs))
        for msg in msgs:
            try:
                await msg.nak(delay=delay or None)
            except Exception:  # already acknowledged, or disconnected: redelivered anyway
                pass

    async def _dead_letter(self, msgs: list[Any], reason: str) -> None:
        """To ``<stream>.dead`` with the reason, then acknowledged: it never stops a relay."""
        subject = f"{self.config.options.stream}.dead"
        for msg in msgs:
            log.warning("dead letter (%s): %s", msg.subject, reason)
            headers = {DEAD_REASON_HEADER: reason.replace("\r", " ").replace("\n", " ")}
            headers["Meterstream-Subject"] = msg.subject
            await self._js.publish(subject, msg.data, headers=headers)
            await msg.ack()
            self._count("dead_lettered")
