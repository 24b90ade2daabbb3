"""The relay fold's pure parts: which events fold, into which groups, with which identifiers."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from meterstream._fleet.aggregate import (
    MAX_SOURCES,
    AggregateRules,
    aggregate_records,
    record_identifier,
)
from meterstream._fleet.aggregate_log import AggregateIndex

RULES = AggregateRules({"tokens": "value"}, 60)


def _event(ident: str, value: str, ts: str = "2026-11-30T12:00:05.250Z", **extra: str) -> Any:
    payload = {"stripe_customer_id": "cus_1", "value": value, **extra}
    return {"identifier": ident, "event_name": "tokens", "timestamp": ts, "payload": payload}


def test_a_timestamp_that_is_no_date_is_sent_unfolded_not_a_crash() -> None:
    assert RULES.group_of(_event("a", "1", ts="2026-13-45T12:00:05.250Z")) is None
    assert RULES.group_of(_event("a", "1", ts="2026-02-30T12:00:05Z")) is None


def test_values_that_are_not_finite_numbers_are_sent_unfolded() -> None:
    for value in ("NaN", "Infinity", "abc", "", "1E+99"):
        assert RULES.group_of(_event("a", value)) is None, value
    assert RULES.group_of(_event("a", "1e3")) is not None


def test_a_group_is_one_name_customer_dimensions_and_window() -> None:
    items = [
        (None, _event("a", "1")),
        (None, _event("b", "2.5")),
        (None, _event("c", "4", model="x")),
        (None, _event("d", "8", ts="2026-11-30T12:01:00.000Z")),
        (None, _event("a", "1")),  # the same use twice: folded once
    ]
    records = aggregate_records(items, RULES)
    bodies = sorted((json.loads(data) for _, data, _, _ in records), key=lambda b: b["sources"])
    assert [b["sources"] for b in bodies] == [["a", "b"], ["c"], ["d"]]
    first = bodies[0]["events"]
    assert [e["payload"]["value"] for e in first] == ["3.5"]
    assert first[0]["timestamp"] == "2026-11-30T12:00:00.000Z"
    assert first[0]["identifier"] == record_identifier(["b", "a"]) + "_0"
    assert len(records[0][2]) == 3  # both messages of "a" are settled by its group


def test_sums_past_15_digits_split_exactly() -> None:
    items = [(None, _event(str(i), "999999999999999")) for i in range(3)]
    (record,) = aggregate_records(items, RULES)
    values = [Decimal(e["payload"]["value"]) for e in json.loads(record[1])["events"]]
    assert len(values) > 1
    assert sum(values) == 3 * Decimal("999999999999999")
    assert all(len(v.normalize().as_tuple().digits) <= 15 for v in values)


def _record(*sources: str) -> bytes:
    return json.dumps({"events": [], "sources": list(sources), "upto": 0}).encode()


def test_a_record_is_valid_only_when_no_earlier_valid_record_has_one_of_its_sources() -> None:
    index = AggregateIndex()
    assert index.apply(1, _record("a", "b"), 0.0)
    assert not index.apply(2, _record("b", "c"), 0.0)  # b is taken
    assert index.apply(3, _record("c", "d"), 0.0)  # record 2 claimed nothing
    assert index.claimed("b") == 1
    assert index.claimed("c") == 3
    assert not index.apply(4, b"not json", 0.0)
    assert index.apply(3, _record("c", "d"), 0.0)  # read again: same verdict


def test_records_whose_sources_were_all_acknowledged_are_forgotten() -> None:
    index = AggregateIndex()
    index.apply(1, json.dumps({"events": [], "sources": ["a"], "upto": 10}).encode(), 0.0)
    index.apply(2, json.dumps({"events": [], "sources": ["b"], "upto": 20}).encode(), 0.0)
    # The stream's clock (its newest record) has not moved: a late repeat may come.
    assert index.prune(ack_floor=30) == 0
    index.apply(3, _record("z"), 10_000.0)
    assert index.prune(ack_floor=15) == 1
    assert index.claimed("a") is None
    assert index.claimed("b") == 2


def _held(upto: int, floor: int, *sources: str) -> bytes:
    body = {"events": [], "sources": list(sources), "upto": upto, "floor": floor}
    return json.dumps(body).encode()


def test_a_record_stops_holding_its_sources_once_acknowledged_and_old() -> None:
    """The verdict uses only what the records say: every relay reaches the same one."""
    index = AggregateIndex()
    assert index.apply(1, _held(10, 0, "a", "b"), 0.0)
    # Folded before record 1's messages were all acknowledged: held.
    assert not index.apply(2, _held(30, 9, "a"), 1000.0)
    # Acknowledged, but record 1 is younger than KEEP: held (a late repeat).
    assert not index.apply(3, _held(30, 10, "a"), 100.0)
    # Acknowledged and old: a repeat of "a" is a new use.
    assert index.apply(4, _held(30, 10, "a"), 1000.0)
    assert index.claimed("a") == 4
    assert index.claimed("b") == 1
    # Forgetting record 1 changes no verdict still to come, and keeps record 4's claim.
    assert index.prune(ack_floor=10) == 1
    assert index.claimed("a") == 4
    assert index.claimed("b") is None


def test_a_relay_behind_in_reading_or_clock_prunes_to_the_same_verdicts() -> None:
    """Age goes by the stream's timestamps, never a relay's own clock."""
    caught_up, lagging = AggregateIndex(), AggregateIndex()
    first, repeat = _held(10, 0, "a"), _held(20, 10, "a")  # a repeat of "a" 5 s later
    for index in (caught_up, lagging):
        assert index.apply(1, first, 1_000.0)
    assert not caught_up.apply(2, repeat, 1_005.0)
    # The lagging relay prunes before reading the repeat: its machine's clock
    # may be hours ahead, the stream says record 1 is not old yet.
    assert lagging.prune(ack_floor=10) == 0
    assert not lagging.apply(2, repeat, 1_005.0)
    assert lagging.claimed("a") == caught_up.claimed("a") == 1


def test_a_group_past_max_sources_becomes_several_records() -> None:
    items = [(None, _event(f"u{i}", "1")) for i in range(MAX_SOURCES + 5)]
    records = aggregate_records(items, RULES)
    sizes = sorted(len(json.loads(data)["sources"]) for _, data, _, _ in records)
    assert sizes == [5, MAX_SOURCES]
    assert max(len(data) for _, data, _, _ in records) < 512 * 1024
    total = sum(
        Decimal(e["payload"]["value"])
        for _, data, _, _ in records
        for e in json.loads(data)["events"]
    )
    assert total == MAX_SOURCES + 5
