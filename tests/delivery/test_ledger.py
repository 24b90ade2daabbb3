"""The ledger of batches on their way: a flush marker fires once all before it settle."""

from __future__ import annotations

from meterstream._delivery.buffer import FlushMarker
from meterstream._delivery.ledger import Ledger
from meterstream._delivery.refusals import split_expired, split_refused
from meterstream._record.events import EventBatch
from meterstream.errors import DeliveryError


def batch(count: int, timestamp: float = 1e9) -> EventBatch:
    raw = [("calls", "cus_1", 1, timestamp + i, i, None) for i in range(count)]
    return EventBatch(raw, lambda name: ("stripe_customer_id", "value"))


def test_a_marker_waits_for_every_batch_before_it_settled_in_any_order() -> None:
    ledger = Ledger()
    first, second = ledger.open(batch(2), 0.0), ledger.open(batch(3), 0.0)
    marker = FlushMarker()
    ledger.mark(marker)
    later = ledger.open(batch(1), 0.0)
    assert ledger.events_in_flight() == 6
    ledger.close(second)
    assert not marker.done.is_set()  # the first is still on its way
    ledger.close(first)
    assert marker.done.is_set()  # the later batch does not hold it
    assert ledger.events_in_flight() == 1 and not later.done


def test_a_split_batch_settles_its_number_with_its_last_part() -> None:
    ledger = Ledger()
    job = ledger.open(batch(4), 5.0)
    job.attempt = 2
    marker = FlushMarker()
    ledger.mark(marker)
    left, right = ledger.replace(job, [batch(2), batch(2)])
    assert job.done and (left.seq, left.deadline, left.attempt) == (job.seq, 5.0, 2)
    ledger.close(left)
    assert not marker.done.is_set()
    ledger.close(right)
    assert marker.done.is_set()


def test_a_marker_with_nothing_before_it_fires_at_once() -> None:
    marker = FlushMarker()
    Ledger().mark(marker)
    assert marker.done.is_set()


def test_abandon_gives_up_everything_and_releases_the_markers() -> None:
    ledger = Ledger()
    jobs = [ledger.open(batch(1), 0.0), ledger.open(batch(2), 0.0)]
    marker = FlushMarker()
    ledger.mark(marker)
    assert ledger.abandon() == jobs
    assert all(job.done for job in jobs) and marker.done.is_set()
    assert ledger.events_in_flight() == 0


def test_a_400_naming_an_event_refuses_it_and_sends_the_rest() -> None:
    error = DeliveryError("bad", reason="rejected", status=400, index=1)
    assert split_refused(3, error) == ([[0, 2]], [([1], error)])
    unnamed = DeliveryError("bad", reason="rejected", status=400)
    assert split_refused(5, unnamed) == ([[0, 1], [2, 3, 4]], [])
    assert split_refused(1, unnamed) is None  # the batch of one is the refused event


def test_events_past_the_window_are_refused_the_rest_go_on() -> None:
    parts, refused = split_expired(batch(3, timestamp=100.0), cutoff=101.0)
    assert parts == [[1, 2]]
    assert [indices for indices, _ in refused] == [[0]]
    assert refused[0][1].code == "timestamp_too_far_in_past"
