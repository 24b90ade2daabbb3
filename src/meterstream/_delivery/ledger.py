"""The batches on their way, by number, and the settlement watermark.

Batches are numbered as they are taken from the buffer, which is FIFO, so
once every batch numbered up to a flush marker has settled (delivered,
refused or given up), everything recorded before that ``flush()`` has. A
batch a 400 splits keeps its number: the number settles with its last part.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence

from meterstream._delivery.buffer import FlushMarker
from meterstream._record import events as _events
from meterstream._record.events import EventBatch

__all__ = ["Job", "Ledger"]

#: Batch numbers for Idempotency-Keys; atomic under the GIL.
_batch_numbers = itertools.count(1)


class Job:
    """One batch on its way: what it holds, its number, its key, its attempts."""

    __slots__ = ("attempt", "batch", "batch_id", "deadline", "done", "oldest", "rotations", "seq")

    def __init__(self, seq: int, batch: EventBatch, deadline: float) -> None:
        self.seq = seq
        self.batch = batch
        # Unique across processes and restarts (the identifier prefix is 80
        # random bits, new in a forked child) without a uuid4 per batch,
        # whose getrandom() call lets go of the GIL.
        self.batch_id = f"{_events.identifier_prefix()}b{next(_batch_numbers)}"
        self.deadline = deadline
        self.attempt = 0
        self.rotations = 0
        #: Settled (or replaced by its parts): nothing more may happen to it.
        self.done = False
        self.oldest = min(batch.timestamps(), default=float("inf"))


class Ledger:
    """Which numbered batches are unsettled, and which flushes wait on them.

    Not locked itself: the delivery calls it under its own lock, with which
    it takes batches from the buffer and queues retries.
    """

    __slots__ = ("_inflight", "_markers", "_next_seq", "_settled_ahead", "_settled_upto")

    def __init__(self) -> None:
        self._next_seq = 0
        #: The unsettled parts of each numbered batch (a 400 may split one).
        self._inflight: dict[int, list[Job]] = {}
        self._settled_upto = -1  # every batch numbered up to this one has settled
        self._settled_ahead: set[int] = set()
        self._markers: deque[tuple[int, FlushMarker]] = deque()

    def open(self, batch: EventBatch, deadline: float) -> Job:
        """Number *batch*, taken from the buffer now, and track it until it settles."""
        job = Job(self._next_seq, batch, deadline)
        self._next_seq += 1
        self._inflight[job.seq] = [job]
        return job

    def mark(self, marker: FlushMarker) -> None:
        """*marker* was taken from the buffer: set it once every batch before it settles."""
        if self._settled_upto >= self._next_seq - 1:
            marker.done.set()
        else:
            self._markers.append((self._next_seq - 1, marker))

    def replace(self, job: Job, parts: Sequence[EventBatch]) -> list[Job]:
        """*job* goes on as *parts* (maybe none), under its number, deadline and attempts."""
        job.done = True
        jobs = self._inflight[job.seq]
        jobs.remove(job)
        new = []
        for batch in parts:
            part = Job(job.seq, batch, job.deadline)
            part.attempt = job.attempt
            new.append(part)
        jobs.extend(new)
        if not jobs:
            self._settled(job.seq)
        return new

    def close(self, job: Job) -> None:
        """*job* settled: its number settles with its last part."""
        job.done = True
        jobs = self._inflight[job.seq]
        jobs.remove(job)
        if not jobs:
            self._settled(job.seq)

    def abandon(self) -> list[Job]:
        """Give up every batch still on its way (shutdown): all numbers settle."""
        abandoned = [job for jobs in self._inflight.values() for job in jobs]
        for job in abandoned:
            job.done = True
        for seq in list(self._inflight):
            self._settled(seq)
        return abandoned

    def batches(self) -> list[EventBatch]:
        """The batches on their way (their unsettled parts)."""
        return [job.batch for jobs in self._inflight.values() for job in jobs]

    def events_in_flight(self) -> int:
        return sum(len(job.batch) for jobs in self._inflight.values() for job in jobs)

    def _settled(self, seq: int) -> None:
        # Move the watermark past every settled number in a row; fire markers.
        del self._inflight[seq]
        self._settled_ahead.add(seq)
        while self._settled_upto + 1 in self._settled_ahead:
            self._settled_upto += 1
            self._settled_ahead.discard(self._settled_upto)
        markers = self._markers
        while markers and markers[0][0] <= self._settled_upto:
            markers.popleft()[1].done.set()
