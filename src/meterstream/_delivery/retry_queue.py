"""The batches waiting to retry, soonest first.

Whichever delivery thread is free takes the next due batch, so a failed
batch never holds a thread. Changes happen under the delivery lock; reading
when the next one is due does not need it (a batch taken meanwhile only
makes a thread look again).
"""

from __future__ import annotations

import heapq
import itertools
from typing import Optional

from meterstream._delivery.ledger import Job

__all__ = ["RetryQueue"]


class RetryQueue:
    """Batches waiting to retry: (when, order, job), soonest first, ties in order queued."""

    __slots__ = ("_heap", "_order")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Job]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def next_at(self) -> float:
        """When the soonest batch is due; infinity when none waits."""
        try:
            return self._heap[0][0]
        except IndexError:  # none, or taken meanwhile
            return float("inf")

    def push(self, when: float, job: Job) -> bool:
        """Queue *job* to go at *when*; True when it is now the soonest."""
        heapq.heappush(self._heap, (when, next(self._order), job))
        return self._heap[0][2] is job

    def pop_due(self, now: float) -> Optional[Job]:
        """The soonest batch due by *now* and not yet settled, or None."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            job = heapq.heappop(heap)[2]
            if not job.done:
                return job
        return None

    def all_due(self, now: float) -> None:
        """Every batch waiting is due at *now*, in the order they were queued."""
        self._heap = [(now, order, job) for _, order, job in self._heap]
        heapq.heapify(self._heap)

    def clear(self) -> None:
        self._heap.clear()
