"""The retry queue: soonest first, ties in the order queued, settled batches skipped."""

from __future__ import annotations

from meterstream._delivery.ledger import Job
from meterstream._delivery.retry_queue import RetryQueue
from meterstream._record.events import EventBatch


def _job(seq: int) -> Job:
    return Job(seq, EventBatch.of([]), deadline=float("inf"))


def test_due_batches_come_out_soonest_first_then_in_the_order_queued() -> None:
    queue = RetryQueue()
    late, first, second = _job(1), _job(2), _job(3)
    assert queue.push(5.0, late) is True
    assert queue.push(2.0, first) is True
    assert queue.push(2.0, second) is False  # a tie goes after the one queued before it
    assert len(queue) == 3
    assert queue.next_at() == 2.0
    assert queue.pop_due(1.0) is None  # nothing due yet; nothing taken
    assert len(queue) == 3
    assert [queue.pop_due(5.0), queue.pop_due(5.0), queue.pop_due(5.0)] == [first, second, late]
    assert queue.pop_due(5.0) is None
    assert queue.next_at() == float("inf")


def test_a_settled_batch_is_dropped_not_returned() -> None:
    queue = RetryQueue()
    settled, waiting = _job(1), _job(2)
    queue.push(1.0, settled)
    queue.push(2.0, waiting)
    settled.done = True
    assert queue.pop_due(3.0) is waiting
    assert len(queue) == 0


def test_all_due_makes_every_batch_due_now_keeping_their_order() -> None:
    queue = RetryQueue()
    jobs = [_job(n) for n in range(4)]
    for when, job in zip((40.0, 10.0, 30.0, 20.0), jobs):
        queue.push(when, job)
    queue.all_due(1.0)
    assert queue.next_at() == 1.0
    assert [queue.pop_due(1.0) for _ in jobs] == jobs  # the order they were queued in
    queue.push(1.0, jobs[0])
    queue.clear()
    assert len(queue) == 0 and queue.pop_due(99.0) is None
