"""The fleet aggregation's decision log (``relay --aggregate``): exactly once across relays.

A relay aggregates the uses of sum meters in a fetched batch into one event per
event name, payload (customer and dimensions) and window, as the in-process
:class:`meterstream._aggregate.aggregator.Aggregator` does. What makes it exactly once is
that the aggregation is *decided* in JetStream before anything is sent:

1. each candidate aggregated group becomes an aggregate record (its events and the
   identifiers of the uses it aggregates), published to ``<stream>.folds`` in the
   stream ``<stream>_FOLDS`` with ``Nats-Msg-Id`` = the group's identifier,
   a hash of its sorted source identifiers;
2. every relay reads that stream in order (an ordered consumer) into a
   :class:`AggregateIndex`; the rule "a record is valid when none of its sources
   is in an earlier valid record that still holds it" depends only on the
   stream's order and the records' contents, so every relay reaches the
   same verdict for every record;
3. a relay sends only valid records' events and acknowledges the source
   messages once Stripe accepted them. A use already in a valid record
   (redelivered after a relay died between Stripe's answer and its acks, or
   published twice) is never aggregated again: the relay sends that record's
   events again (same identifiers, so Stripe drops a repeat) and acks it.

See docs/fleet.md for the costs and the failure modes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Optional

from meterstream._fleet.aggregate import AggregateRules, Unit, aggregate_records
from meterstream.errors import ConfigurationError

__all__ = ["FleetAggregator", "AggregateIndex", "aggregates_stream", "aggregates_subject"]

log = logging.getLogger("meterstream.relay")

#: How long the aggregate records' stream keeps a record: Stripe's identifier dedupe
#: lasts 24 hours, so past that a record's identifiers protect nothing.
AGGREGATES_MAX_AGE = 24 * 3600.0
#: A record protects its sources this long after it was published (by the
#: records' stream's own timestamps), whatever the ack floor says: a producer's
#: late retry (a repeat JetStream no longer dedupes) still finds it.
KEEP = 600.0
#: A relay aggregates only with an ack floor it read at most this long ago.
FLOOR_MAX_AGE = 60.0
#: A relay forgets a record only by a floor it read at least this long ago:
#: every record it has not read yet carries a floor at least that high
#: (read within FLOOR_MAX_AGE before aggregation, published within seconds).
FLOOR_SAFE_AGE = 300.0
#: Slack between this machine's clock and the servers' timestamps.
CLOCK_SLACK = 60.0
#: Rounds of "publish, read the verdicts" for one batch before its
#: messages are handed back (each round settles at least one use).
MAX_ROUNDS = 8


def aggregates_stream(stream: str) -> str:
    """The stream holding aggregate records for the events stream *stream*."""
    return f"{stream}_FOLDS"


def aggregates_subject(stream: str) -> str:
    return f"{stream}.folds"


def _redelivered(msg: Any) -> bool:
    try:
        return int(msg.metadata.num_delivered) > 1
    except Exception:
        return True  # unknown: look, to be safe


@dataclass
class _Record:
    events: list[dict[str, Any]]
    sources: list[str]
    upto: int
    at: float


class AggregateIndex:
    """The verdict on every aggregate record read so far, in stream order.

    A record is valid when none of its sources is in an earlier valid record
    that still holds it; a valid record claims its sources. An earlier
    record R1 no longer holds its sources for a later record R2 when every
    source of R1 was acknowledged by the time R2 was aggregated (``R1.upto <=
    R2.floor``, the consumer's ack floor R2's relay had read) and R1 is
    older than KEEP (by the stream's timestamps). Both facts are in the
    records, so every relay reaches the same verdict, and a relay can forget
    R1 once no record still to come can be held by it (see :meth:`prune`).
    """

    def __init__(self) -> None:
        self.last_seq = 0
        #: The stream's timestamp of the newest record read: the clock prune() goes by.
        self.last_at = 0.0
        self._claims: dict[str, int] = {}
        self._records: dict[int, _Record] = {}

    def __len__(self) -> int:
        return len(self._records)

    def apply(self, seq: int, data: bytes, at: float) -> bool:
        """Read the record at stream sequence *seq*; True when it is valid."""
        if seq <= self.last_seq:
            return seq in self._records  # read again after a reconnection
        self.last_seq = seq
        self.last_at = max(self.last_at, at)
        try:
            body = json.loads(data)
            sources = [str(s) for s in body["sources"]]
            events = list(body["events"])
            upto = int(body.get("upto", 0))
            floor = int(body.get("floor", 0))
        except Exception:
            log.warning("ignoring an aggregate record that cannot be read (sequence %d)", seq)
            return False
        for source in sources:
            held = self._claims.get(source)
            if held is None:
                continue
            earlier = self._records[held]
            if earlier.upto > floor or at - earlier.at < KEEP:
                return False
        for source in sources:
            self._claims[source] = seq
        self._records[seq] = _Record(events, sources, upto, at)
        return True

    def claimed(self, identifier: str) -> Optional[int]:
        """The sequence of the valid record that aggregated *identifier*, if any."""
        return self._claims.get(identifier)

    def valid(self, seq: int) -> bool:
        return seq in self._records

    def events(self, seq: int) -> list[dict[str, Any]]:
        return self._records[seq].events

    def prune(self, ack_floor: int) -> int:
        """Forget the records no record still to come can be held by.

        *ack_floor* must be at most the floor any record not read yet
        carries (one read FLOOR_SAFE_AGE ago). Age is measured on the
        stream's clock, up to the newest record read (:attr:`last_at`),
        never this machine's: a record not read yet is at least that new,
        so every relay forgets a record only when none still to come could
        be held by it, however far behind its reading or its clock. A
        message at or below the ack floor is never delivered again, so such
        records are needed no more. Returns how many were dropped.
        """
        gone = [
            seq
            for seq, rec in self._records.items()
            if rec.upto <= ack_floor and self.last_at - rec.at >= KEEP + CLOCK_SLACK
        ]
        for seq in gone:
            for source in self._records.pop(seq).sources:
                if self._claims.get(source) == seq:
                    del self._claims[source]
        return len(gone)


class FleetAggregator:
    """One relay's side of the fleet aggregation: the index reader and the batch planner.

    Args:
        js: a JetStream context.
        stream: the events stream's name.
        durable: the relays' durable consumer (its ack floor bounds the index).
        rules: which names aggregate, and the window.
        replicas: replicas of the records' stream when this relay creates it.
    """

    def __init__(
        self, js: Any, stream: str, durable: str, rules: AggregateRules, *, replicas: int = 1
    ) -> None:
        self._js = js
        self._stream = stream
        self._durable = durable
        self.rules = rules
        self._replicas = replicas
        self.index = AggregateIndex()
        self._changed = asyncio.Condition()
        self._sub: Any = None
        #: Ack floors read, (monotonic time, floor), oldest first.
        self._floors: list[tuple[float, int]] = []

    async def start(self) -> None:
        """Create the records' stream when missing and start reading it from its start."""
        import nats.js.errors
        from nats.js.api import DeliverPolicy, StorageType, StreamConfig

        from meterstream._fleet.nats import DUPLICATE_WINDOW

        name = aggregates_stream(self._stream)
        try:
            info = await self._js.stream_info(name)
            # Read from the start before any aggregation is decided: say how much.
            log.info("reading %d aggregate records from stream %s", info.state.messages, name)
        except nats.js.errors.NotFoundError:
            config = StreamConfig(
                name=name,
                subjects=[aggregates_subject(self._stream)],
                storage=StorageType.FILE,
                num_replicas=self._replicas,
                duplicate_window=DUPLICATE_WINDOW,
                max_age=AGGREGATES_MAX_AGE,
            )
            try:
                await self._js.add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                if getattr(exc, "err_code", None) != 10058:  # not "created meanwhile"
                    raise ConfigurationError(
                        f"--aggregate: cannot create the aggregate records' stream {name!r}: {exc}"
                    ) from None
        self._sub = await self._js.subscribe(
            aggregates_subject(self._stream),
            stream=name,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            cb=self._on_record,
        )

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass

    async def _on_record(self, msg: Any) -> None:
        meta = msg.metadata
        at = meta.timestamp.timestamp() if meta.timestamp else time.time()
        self.index.apply(int(meta.sequence.stream), msg.data, at)
        async with self._changed:
            self._changed.notify_all()

    async def sync(self, target: Optional[int] = None, timeout: float = 30.0) -> None:
        """Wait until the index has read every record up to *target* (default: the last)."""
        if target is None:
            info = await self._js.stream_info(aggregates_stream(self._stream))
            target = info.state.last_seq if info.state.messages else 0
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: self.index.last_seq >= target), timeout
            )

    async def floor(self, max_age: float = FLOOR_MAX_AGE) -> int:
        """The consumer's ack floor, read again when the last reading is older than *max_age*."""
        now = time.monotonic()
        if self._floors and now - self._floors[-1][0] < max_age:
            return self._floors[-1][1]
        info = await self._js.consumer_info(self._stream, self._durable)
        floor = int(info.ack_floor.stream_seq) if info.ack_floor else 0
        self._floors.append((time.monotonic(), floor))
        return floor

    async def maybe_prune(self) -> None:
        """Now and then read the ack floor, and forget records an old reading says are done."""
        try:
            await self.floor(FLOOR_MAX_AGE / 2)
        except Exception:
            return
        now = time.monotonic()
        safe = [f for t, f in self._floors if now - t >= FLOOR_SAFE_AGE]
        if safe:
            self.index.prune(safe[-1])
            # Keep the newest safe reading and everything after it.
            self._floors = self._floors[len(safe) - 1 :]

    async def plan(self, items: list[tuple[Any, dict[str, Any]]]) -> tuple[list[Unit], list[Any]]:
        """Decide the aggregation of *items* (message, aggregatable event).

        Returns the units to send (each a valid record's events and the
        messages they settle) and the messages no verdict could be reached
        for (hand them back).
        """
        if any(_redelivered(msg) for msg, _ in items):
            await self.sync()  # a use may already be in a record: read them all
        units: dict[int, Unit] = {}
        pending = items
        for _ in range(MAX_ROUNDS):
            fresh = []
            for msg, event in pending:
                seq = self.index.claimed(event["identifier"])
                if seq is None:
                    fresh.append((msg, event))
                    continue
                self._unit(units, seq).msgs.append(msg)
            if not fresh:
                return list(units.values()), []
            records = aggregate_records(fresh, self.rules, await self.floor())
            subject = aggregates_subject(self._stream)
            acks = await asyncio.gather(
                *(
                    self._js.publish(subject, data, headers={"Nats-Msg-Id": rid})
                    for rid, data, _, _ in records
                )
            )
            await self.sync(max(ack.seq for ack in acks))
            pending = []
            for ack, (_, _, msgs, members) in zip(acks, records):
                if self.index.valid(ack.seq):
                    self._unit(units, ack.seq).msgs.extend(msgs)
                else:
                    pending.extend(members)  # claimed elsewhere in part: look again
            if not pending:
                return list(units.values()), []
        return list(units.values()), [msg for msg, _ in pending]

    def _unit(self, units: dict[int, Unit], seq: int) -> Unit:
        unit = units.get(seq)
        if unit is None:
            unit = units[seq] = Unit(self.index.events(seq), [], aggregated=True)
        return unit
