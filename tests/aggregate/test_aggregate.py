"""The Folder: exact sums across threads, aligned windows, closing, identifiers, forks."""

from __future__ import annotations

import asyncio
import math
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Context, Decimal, Inexact
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterstream._aggregate import aggregator as _aggregate
from meterstream._aggregate.aggregator import Aggregator
from meterstream._aggregate.arithmetic import (
    aggregate,
    aggregate_identifier,
    dimensions_key,
    window_start,
)
from meterstream._config.aggregate import WINDOWS
from meterstream._fleet.aggregate import AggregateRules
from meterstream._record import checks as _checks
from meterstream._record.events import RawEvent
from meterstream._spool.rows import encode_dimensions

# Slow machines and shared CPUs: no per-example deadline, nothing written to disk.
PROPERTY_SETTINGS = settings(
    deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
NOW = 1_750_000_000.0  # 2025-06-15T15:06:40Z: a multiple of 60
DIMS = [None, {"model": "gpt-4o"}, {"model": "small", "region": "eu"}]


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


#: Sums in the tests must be exact too: the default context rounds at 28 digits.
EXACT = Context(prec=1000, traps=[Inexact])


def add_exact(a: Decimal, b: Decimal) -> Decimal:
    return EXACT.add(a, b)


def written(value: Any) -> Decimal:
    """What the unfolded path would put on the wire for *value*, as a Decimal."""
    return Decimal(_checks.format_value(value))


def totals(events: list[RawEvent]) -> dict[tuple[str, str, Any], Decimal]:
    out: dict[tuple[str, str, Any], Decimal] = {}
    for name, customer, value, _ts, _ident, dims in events:
        key = (name, customer, dimensions_key(dims))
        out[key] = add_exact(out.get(key, Decimal(0)), written(value))
    return out


def assert_valid_events(events: list[RawEvent]) -> None:
    """Each folded event passes the checks a recorded use passes, identifiers unique."""
    for name, customer, value, ts, ident, dims in events:
        _checks.check_event_name(name)
        _checks.check_customer(customer)
        _checks.check_value(value)
        assert isinstance(ident, str)
        _checks.check_identifier(ident)
        _checks.check_dimensions(dims)
        assert ts == int(ts)
    identifiers = [event[4] for event in events]
    assert len(set(identifiers)) == len(identifiers)


def random_value(rng: random.Random) -> Any:
    kind = rng.random()
    if kind < 0.5:
        return rng.randint(0, 10 ** rng.randint(1, 15) - 1)
    if kind < 0.75:
        digits = rng.randint(1, 15)
        return Decimal(rng.randint(0, 10**digits - 1)).scaleb(-rng.randint(0, 8))
    return rng.uniform(0, 10 ** rng.randint(0, 12)) * rng.choice((1.0, 1e-6))


# -- exactness ----------------------------------------------------------------------------


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """GIL hand-offs every microsecond: threads get preempted inside add()."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_threads_fold_to_exactly_what_the_unfolded_events_would_sum(
    fast_switching: None,
) -> None:
    # 8 threads, 100 customers, 3 dimension sets, ints, Decimals and floats,
    # 1-second windows rolling over during the run, and a closer taking
    # windows concurrently: every use lands in exactly one event.
    aggregator = Aggregator(["llm_tokens"], 1)
    per_thread = 40_000
    plans = []
    expected: dict[tuple[str, str, Any], Decimal] = {}
    for t in range(8):
        rng = random.Random(t)
        plan = [
            (f"cus_{rng.randrange(100)}", random_value(rng), DIMS[rng.randrange(3)])
            for _ in range(per_thread)
        ]
        plans.append(plan)
        for customer, value, dims in plan:
            key = ("llm_tokens", customer, dimensions_key(dims))
            expected[key] = add_exact(expected.get(key, Decimal(0)), written(value))
    events: list[RawEvent] = []
    done = threading.Event()
    barrier = threading.Barrier(9)
    failures: list[BaseException] = []

    def work(plan: list[tuple[str, Any, Optional[dict[str, str]]]]) -> None:
        try:
            barrier.wait()
            add = aggregator.add
            for customer, value, dims in plan:
                assert add("llm_tokens", customer, value, dims)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    def closer() -> None:
        barrier.wait()
        while not done.is_set():
            events.extend(aggregator.close())
            done.wait(0.001)

    threads = [threading.Thread(target=work, args=(plan,)) for plan in plans]
    closing = threading.Thread(target=closer)
    for thread in [*threads, closing]:
        thread.start()
    for thread in threads:
        thread.join(120)
    done.set()
    closing.join(60)
    events.extend(aggregator.close(force=True))
    assert not failures
    assert not aggregator.pending()
    assert totals(events) == expected
    assert_valid_events(events)
    stats = aggregator.stats()
    assert stats["aggregated_uses"] == 8 * per_thread
    assert stats["aggregated_events"] == len(events)


class PausingCustomer(str):
    """A customer id whose first hash pauses the adding thread inside add(),
    after it has taken its dicts and before it writes to them."""

    def arm(self) -> PausingCustomer:
        self.inside = threading.Event()
        self.release = threading.Event()
        return self

    def __hash__(self) -> int:
        if not self.inside.is_set():
            self.inside.set()
            assert self.release.wait(60)
        return str.__hash__(self)


@pytest.mark.parametrize("value", [5, 5.5, Decimal("5.5")], ids=["int", "float", "Decimal"])
def test_a_close_never_takes_sums_a_thread_is_still_writing_to(value: Any) -> None:
    aggregator = Aggregator(["t"], 5)
    pausing = PausingCustomer("cus_1").arm()

    def writer() -> None:
        aggregator.add("t", "cus_0", value)
        aggregator.add("t", pausing, value)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert pausing.inside.wait(60)
        # The writer holds its dicts: this close must not return them yet.
        first = aggregator.close(force=True, wait=0.05)
        assert first == []
        assert aggregator.pending()
    finally:
        pausing.release.set()
        thread.join(60)
    second = aggregator.close(force=True)
    assert sorted((e[1], e[2]) for e in first + second) == [("cus_0", value), ("cus_1", value)]
    assert not aggregator.pending()


def test_floats_past_the_held_bound_are_converted_as_they_come_and_stay_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_aggregate, "_MAX_HELD_FLOATS", 10)
    aggregator = Aggregator(["t"], 5)
    rng = random.Random(11)
    values = [rng.uniform(0, 1000) for _ in range(100)]
    for value in values:
        assert aggregator.add("t", "cus_1", value)
    expected = Decimal(0)
    for value in values:
        expected = add_exact(expected, written(value))
    assert totals(aggregator.close(force=True)) == {("t", "cus_1", None): expected}


class PausingAppend:
    """Stands in for the folder's list of rolled-over windows: the first
    append pauses, as a thread preempted between looking the list up and
    appending to it would."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.inside = threading.Event()
        self.release = threading.Event()

    def append(self, item: Any) -> None:
        if not self.inside.is_set():
            self.inside.set()
            assert self.release.wait(60)
        self.inner.append(item)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.inner)


def test_a_window_handed_over_while_a_close_runs_is_not_lost() -> None:
    clock = FakeClock(NOW + 1)
    aggregator = Aggregator(["t"], 5, clock=clock)
    pausing = PausingAppend(aggregator._ready)
    aggregator._ready = pausing  # type: ignore[assignment]

    def writer() -> None:
        aggregator.add("t", "cus_1", 3)
        clock.now = NOW + 6
        aggregator.add("t", "cus_1", 4)  # rolls over: hands its first window over

    events: list[RawEvent] = []
    closed = threading.Event()

    def closer() -> None:
        events.extend(aggregator.close(NOW + 6))
        closed.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert pausing.inside.wait(60)
    closing = threading.Thread(target=closer)
    closing.start()
    # The close cannot end while the writer holds its lock; this only gives
    # it time to get that far (the test holds whether or not it did).
    assert not closed.wait(0.2)
    pausing.release.set()
    thread.join(60)
    closing.join(60)
    events.extend(aggregator.close(NOW + 100, force=True))
    assert sorted((e[3], e[2]) for e in events) == [(NOW, 3), (NOW + 5, 4)]


def test_asyncio_tasks_on_one_thread_fold_exactly() -> None:
    aggregator = Aggregator(["search"], 5)
    rng = random.Random(7)
    values = [random_value(rng) for _ in range(20_000)]

    async def task(chunk: list[Any], customer: str) -> None:
        for i, value in enumerate(chunk):
            assert aggregator.add("search", customer, value)
            if i % 100 == 0:
                await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(
            *(task(values[i::20], f"cus_{i % 4}") for i in range(20)),
        )

    asyncio.run(main())
    events = aggregator.close(force=True)
    expected: dict[tuple[str, str, Any], Decimal] = {}
    for i in range(20):
        key = ("search", f"cus_{i % 4}", None)
        for value in values[i::20]:
            expected[key] = add_exact(expected.get(key, Decimal(0)), written(value))
    assert totals(events) == expected
    assert_valid_events(events)


def test_fold_of_stored_uses_equals_the_folder() -> None:
    clock = FakeClock()
    aggregator = Aggregator(["t"], 5, aggregate_id="fold_a_", clock=clock)
    rng = random.Random(3)
    uses = []
    for i in range(3000):
        clock.now = NOW + i * 0.01
        value = random_value(rng)
        customer = f"cus_{i % 7}"
        aggregator.add("t", customer, value, DIMS[i % 3])
        uses.append(("t", customer, value, clock.now, dimensions_key(DIMS[i % 3])))
    from_aggregator = aggregator.close(force=True)
    from_aggregate = aggregate(uses, window=5, aggregate_id="fold_a_")
    assert from_aggregator == from_aggregate
    assert aggregate(uses, window=5, aggregate_id="fold_a_") == from_aggregate  # deterministic


# -- what is and is not folded --------------------------------------------------------------


def test_names_not_aggregated_and_values_that_cannot_be_folded_exactly_are_declined() -> None:
    aggregator = Aggregator(["t"], 5)
    assert aggregator.add("other", "cus_1", 5) is False
    assert aggregator.add("t", "cus_1", True) is False
    assert aggregator.add("t", "cus_1", float("nan")) is False
    assert aggregator.add("t", "cus_1", Decimal("Infinity")) is False
    assert aggregator.add("t", "cus_1", Decimal("1E+70")) is False
    assert aggregator.add("t", "cus_1", 1e-70) is False
    assert aggregator.add("t", "cus_1", "5") is False  # strings are the caller's to check
    assert aggregator.close(force=True) == []
    assert aggregator.stats()["aggregated_uses"] == 0


def test_past_max_keys_new_keys_are_declined_and_known_keys_still_fold() -> None:
    aggregator = Aggregator(["t"], 5, max_keys=3)
    for i in range(3):
        assert aggregator.add("t", f"cus_{i}", 1)
    assert aggregator.add("t", "cus_new", 1) is False
    assert aggregator.add("t", "cus_new", Decimal("1.5"))  # the Decimal sums have their own bound
    assert aggregator.add("t", "cus_0", 1)
    events = aggregator.close(force=True)
    assert sorted((e[1], e[2]) for e in events) == [
        ("cus_0", 2),
        ("cus_1", 1),
        ("cus_2", 1),
        ("cus_new", Decimal("1.5")),
    ]
    assert aggregator.stats()["aggregated_uses"] == 5


def test_dimensions_fold_by_content_not_by_dict_identity_or_order() -> None:
    aggregator = Aggregator(["t"], 5)
    aggregator.add("t", "cus_1", 1, {"a": "1", "b": "2"})
    aggregator.add("t", "cus_1", 2, {"b": "2", "a": "1"})
    aggregator.add("t", "cus_1", 4, dimensions_key({"a": "1", "b": "2"}))
    aggregator.add("t", "cus_1", 8, {})
    aggregator.add("t", "cus_1", 16)
    events = aggregator.close(force=True)
    assert sorted((e[2], e[5]) for e in events) == [(7, {"a": "1", "b": "2"}), (24, None)]


def test_refused_names_stop_folding_and_what_was_folded_is_still_closed() -> None:
    aggregator = Aggregator(["t", "u"], 5)
    assert aggregator.add("t", "cus_1", 3)
    assert aggregator.refuse("t", "count meter")
    assert not aggregator.refuse("t", "count meter")
    assert aggregator.add("t", "cus_1", 3) is False
    assert aggregator.names == frozenset({"u"})
    assert aggregator.refused == {"t": "count meter"}
    assert [e[2] for e in aggregator.close(force=True)] == [3]
    assert aggregator.stats()["aggregate_refused"] == 1


# -- windows --------------------------------------------------------------------------------


@pytest.mark.parametrize("window", WINDOWS)
def test_windows_are_aligned_to_the_clock_and_never_straddle_a_minute(window: int) -> None:
    rng = random.Random(window)
    for _ in range(2000):
        t = NOW + rng.uniform(-1e6, 1e6)
        start = window_start(t, window)
        assert start <= t < start + window
        assert start % window == 0
        assert start // 60 == (start + window - 0.001) // 60


@PROPERTY_SETTINGS
@given(
    st.sampled_from(WINDOWS),
    st.integers(min_value=0, max_value=10**10),
    st.sampled_from([-2, -1, 0, 1, 2]),
)
def test_times_next_to_a_boundary_fall_in_the_right_window(
    window: int, boundary: int, steps: int
) -> None:
    t = float(boundary * window)
    for _ in range(abs(steps)):
        t = math.nextafter(t, math.inf if steps > 0 else -math.inf)
    start = window_start(t, window)
    assert start <= t < start + window and start % window == 0


def test_a_window_closes_once_it_has_ended_with_its_start_as_timestamp() -> None:
    clock = FakeClock(NOW + 3.7)
    aggregator = Aggregator(["t"], 5, clock=clock)
    aggregator.add("t", "cus_1", 2)
    clock.now = NOW + 4.999
    aggregator.add("t", "cus_1", 3)
    assert aggregator.close(NOW + 4.999) == []  # still open
    assert aggregator.pending()
    clock.now = NOW + 5.0
    aggregator.add("t", "cus_1", 10)  # the next window
    (event,) = aggregator.close(NOW + 5.0)
    assert (event[2], event[3]) == (5, NOW)
    assert aggregator.pending()
    assert aggregator.close(NOW + 9.9) == []
    (event,) = aggregator.close(NOW + 10.0)
    assert (event[2], event[3]) == (10, NOW + 5)
    assert not aggregator.pending()


def test_an_idle_threads_ended_window_is_closed_without_it() -> None:
    clock = FakeClock(NOW + 1)
    aggregator = Aggregator(["t"], 5, clock=clock)
    thread = threading.Thread(target=aggregator.add, args=("t", "cus_1", 7))
    thread.start()
    thread.join()
    (event,) = aggregator.close(NOW + 6)
    assert (event[2], event[3]) == (7, NOW)
    assert aggregator.close(NOW + 100, force=True) == []
    assert aggregator.stats()["aggregated_uses"] == 1  # kept once the dead thread is forgotten


def test_flush_mid_window_then_more_uses_make_a_second_event_with_its_own_identifier() -> None:
    clock = FakeClock(NOW + 1)
    aggregator = Aggregator(["t"], 5, clock=clock)
    aggregator.add("t", "cus_1", 2)
    (first,) = aggregator.close(force=True)
    aggregator.add("t", "cus_1", 3)
    (second,) = aggregator.close(force=True)
    assert (first[2], second[2]) == (2, 3)
    assert first[3] == second[3] == NOW
    assert first[4] != second[4]


def test_a_clock_stepping_back_starts_a_window_of_its_own() -> None:
    clock = FakeClock(NOW + 62)
    aggregator = Aggregator(["t"], 5, clock=clock)
    aggregator.add("t", "cus_1", 1)
    clock.now = NOW + 2  # NTP stepped the clock back a minute
    aggregator.add("t", "cus_1", 2)
    events = aggregator.close(force=True)
    assert sorted((e[3], e[2]) for e in events) == [(NOW, 2), (NOW + 60, 1)]


# -- the 15-digit split in a fold -------------------------------------------------------------


def test_a_sum_past_15_digits_is_split_into_events_that_add_up_exactly() -> None:
    aggregator = Aggregator(["t"], 5)
    biggest = 10**15 - 1
    for _ in range(1001):
        aggregator.add("t", "cus_1", biggest)
    aggregator.add("t", "cus_1", Decimal("0.000001"))
    events = aggregator.close(force=True)
    assert len(events) > 1
    assert_valid_events(events)
    total = Decimal(0)
    for event in events:
        total = add_exact(total, written(event[2]))
    assert total == add_exact(Decimal(1001 * biggest), Decimal("0.000001"))


# -- identifiers ----------------------------------------------------------------------------


def test_identifiers_are_a_function_of_the_fold_and_differ_between_folds() -> None:
    key = ("llm_tokens", "cus_1", (("model", "x"),))
    ident = aggregate_identifier("msa_abc_", key, NOW, 0, 0)
    assert ident == aggregate_identifier("msa_abc_", key, NOW, 0, 0)
    others = {
        aggregate_identifier("msa_abd_", key, NOW, 0, 0),
        aggregate_identifier("msa_abc_", ("llm_tokens", "cus_2", (("model", "x"),)), NOW, 0, 0),
        aggregate_identifier("msa_abc_", ("llm_tokens", "cus_1", None), NOW, 0, 0),
        aggregate_identifier("msa_abc_", key, NOW + 5, 0, 0),
        aggregate_identifier("msa_abc_", key, NOW, 1, 0),
        aggregate_identifier("msa_abc_", key, NOW, 0, 1),
    }
    assert ident not in others and len(others) == 6
    longest = aggregate_identifier(
        "x" * 40, ("n" * 100, "c" * 5000, None), 9_999_999_999, 10**9, 99
    )
    assert len(longest) <= 100


def test_two_folders_with_one_fold_id_and_the_same_uses_make_the_same_events() -> None:
    def run() -> list[RawEvent]:
        clock = FakeClock(NOW + 1)
        aggregator = Aggregator(["t"], 5, aggregate_id="spool_17_", clock=clock)
        for i in range(100):
            aggregator.add("t", f"cus_{i % 3}", i, DIMS[i % 3])
        return aggregator.close(force=True)

    assert run() == run()


@pytest.mark.parametrize("window", [0, 7, 120, 2.5, True])
def test_a_folder_refuses_a_window_that_does_not_divide_a_minute(window: Any) -> None:
    with pytest.raises(ValueError, match="window must be whole seconds dividing a minute"):
        Aggregator(["t"], window)


def test_a_folder_refuses_a_fold_id_that_leaves_no_room_in_100_characters() -> None:
    with pytest.raises(ValueError, match="fold_id must be 1..40 characters"):
        Aggregator(["t"], 5, aggregate_id="x" * 41)


def test_each_folder_has_its_own_random_fold_id() -> None:
    assert Aggregator(["t"], 5).aggregate_id != Aggregator(["t"], 5).aggregate_id


# -- forks ----------------------------------------------------------------------------------

CHILD_SCRIPT = """
import ctypes, os, sys, threading
from meterstream._aggregate.aggregator import Aggregator

aggregator = Aggregator(["t"], 60)
stop = threading.Event()
added = [0]

def busy():  # a thread adding while the fork happens
    while not stop.is_set():
        aggregator.add("t", "cus_parent", 1)
        added[0] += 1

closed = []

def closing():  # and one closing windows, taking the aggregator's locks
    while not stop.is_set():
        closed.extend(aggregator.close())

thread = threading.Thread(target=busy)
thread.start()
closer = threading.Thread(target=closing)
closer.start()
while added[0] < 1000:
    pass
aggregator.add("t", "cus_parent", 5)
parent_id = aggregator.aggregate_id
if "{fork}" != "os.fork()":
    # libc's fork() skips the interpreter's own fork handling, so a thread
    # waiting for the GIL at that moment could leave it locked in the child:
    # fork from a quiet process, with the sums of the stopped threads open.
    stop.set()
    thread.join()
    closer.join()
r, w = os.pipe()
pid = {fork}
if pid == 0:
    {after_fork}
    out = aggregator.close(force=True)
    aggregator.add("t", "cus_child", 7)
    mine = aggregator.close(force=True)
    ok = (out == [] and aggregator.aggregate_id != parent_id
          and [(e[1], e[2]) for e in mine] == [("cus_child", 7)])
    os.write(w, b"ok" if ok else repr((out, mine)).encode()[:500])
    os._exit(0)
os.close(w)
answer = os.read(r, 1000)
os.waitpid(pid, 0)
stop.set()
thread.join()
closer.join()
events = closed + aggregator.close(force=True)
total = sum(e[2] for e in events if e[1] == "cus_parent")
assert answer == b"ok", answer
assert total == added[0] + 5, (total, added[0])
assert aggregator.aggregate_id == parent_id
print("fine")
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize(
    ("fork", "after_fork"),
    [
        ("os.fork()", "pass"),
        # libc's fork() skips os.register_at_fork: the client's own fork
        # check calls after_fork(), as it does for its buffer. (PyDLL keeps
        # the GIL through the call.)
        ("ctypes.PyDLL(None).fork()", "aggregator.after_fork()"),
        # Nobody noticed the fork: close() itself does, and never sends
        # the parent's windows from the child.
        ("ctypes.PyDLL(None).fork()", "pass"),
    ],
    ids=["os.fork", "libc-fork-with-check", "libc-fork-unnoticed"],
)
def test_a_forked_child_starts_empty_and_the_parent_keeps_its_own(
    fork: str, after_fork: str
) -> None:
    script = CHILD_SCRIPT.replace("{fork}", fork).replace("{after_fork}", after_fork)
    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "fine"


def test_counters_add_up_across_many_short_lived_threads() -> None:
    aggregator = Aggregator(["t"], 5)
    seen: Counter[str] = Counter()
    for i in range(50):
        thread = threading.Thread(target=aggregator.add, args=("t", f"cus_{i % 5}", 1))
        thread.start()
        thread.join()
        seen[f"cus_{i % 5}"] += 1
        if i % 10 == 0:
            aggregator.close(force=True)
    aggregator.close(force=True)
    assert aggregator.stats()["aggregated_uses"] == 50
    assert aggregator.close(time.time() + 3600, force=True) == []


def test_one_dimensions_key_whatever_their_order_in_memory_in_a_spool_and_in_a_relay() -> None:
    ab, ba = {"a": "1", "b": "2"}, {"b": "2", "a": "1"}
    assert dimensions_key(ab) == dimensions_key(ba) == (("a", "1"), ("b", "2"))
    assert dimensions_key(dimensions_key(ab)) == dimensions_key(ab)
    # A spool row, pending or a use waiting in its window, keeps the key as text.
    assert encode_dimensions(ba) == encode_dimensions(ab) == '{"a":"1","b":"2"}'
    assert encode_dimensions(dimensions_key(ba)) == '{"a":"1","b":"2"}'
    assert encode_dimensions(None) is None and encode_dimensions({}) is None
    # A relay groups wire events by their payload apart from the value.
    rules = AggregateRules({"tokens": "value"}, 5)
    stamp = "2025-06-15T15:06:41.000Z"
    one = rules.group_of(
        {"event_name": "tokens", "timestamp": stamp, "payload": {"c": "x", **ab, "value": "3"}}
    )
    two = rules.group_of(
        {"event_name": "tokens", "timestamp": stamp, "payload": {"value": "3", **ba, "c": "x"}}
    )
    assert one is not None and one == two
    assert one[0][2] == dimensions_key({"c": "x", **ab})
