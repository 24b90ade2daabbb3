"""Aggregation with a spool: uses are stored in the spool and folded there exactly once."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Callable

import pytest

import meterstream
from helpers.poll import wait_for
from helpers.spool import child_env
from meterstream._spool import aggregate_store as _fold_store
from meterstream._spool.aggregate import SpoolAggregator
from meterstream._spool.rows import encode_dimensions
from meterstream._spool.spool import Spool
from meterstream.emulator import Emulator

WINDOW = 5


@pytest.fixture
def spool(spool_path: str) -> Iterator[Spool]:
    handle = Spool(spool_path)
    yield handle
    handle.close()


def _pending_totals(spool: Spool) -> dict[tuple[str, str], Decimal]:
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for event in spool.admin.export("pending"):
        totals[(event["event_name"], event["customer"])] += Decimal(str(event["value"]))
    return dict(totals)


def _identifiers(spool: Spool) -> list[str]:
    return [event["identifier"] for event in spool.admin.export("pending")]


def _use(spool: Spool, customer: str, value: object, start: float) -> None:
    stored = value if isinstance(value, int) else str(value)
    assert isinstance(stored, (int, str))
    spool.append_use("tokens", customer, stored, start, start + WINDOW, None)


def test_uses_recorded_with_a_spool_survive_an_exit_without_flush(
    spool_path: str,
    emulator: Emulator,
    make_client: Callable[..., meterstream.MeterClient],
) -> None:
    emulator.state.create_meter(
        {"event_name": "tokens", "display_name": "tokens", "default_aggregation[formula]": "sum"}
    )
    proc = subprocess.run(
        [sys.executable, "-m", "apps.aggregate_child", "exit", spool_path, emulator.url, "50"],
        env=child_env(),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")

    client = make_client(emulator.url, spool_path=spool_path, aggregate={"tokens": "sum"})
    assert client.flush(30), client.stats()
    assert emulator.state.total("tokens", "cus_exit").sum == sum(range(1, 51))
    # Folded: far fewer events than uses (one a window, and the uses took
    # at most a few windows).
    assert 1 <= emulator.state.total("tokens", "cus_exit").count <= 10


def test_a_fold_sums_exactly_and_deletes_the_uses(spool: Spool) -> None:
    for value in (1, 2, Decimal("0.1"), Decimal("0.2"), "0.35"):
        _use(spool, "cus_1", value, 1000.0)
    _use(spool, "cus_2", 7, 1000.0)
    _use(spool, "cus_2", 8, 1005.0)  # a window not ended at 1006: stays
    assert spool.aggregate_due(1006.0) == 2
    assert _pending_totals(spool) == {
        ("tokens", "cus_1"): Decimal("3.65"),
        ("tokens", "cus_2"): Decimal(7),
    }
    assert spool.uses_count() == 1
    assert spool.aggregate_due(1006.0) == 0  # nothing more has ended
    assert spool.aggregate_due(1006.0, force=True) == 1
    assert spool.uses_count() == 0
    assert _pending_totals(spool)[("tokens", "cus_2")] == 15


def test_a_sum_past_15_digits_is_split_into_events_that_add_up(spool: Spool) -> None:
    _use(spool, "cus_1", 999_999_999_999_999, 1000.0)
    _use(spool, "cus_1", Decimal("0.001"), 1000.0)
    assert spool.aggregate_due(2000.0) == 2
    values = [Decimal(str(e["value"])) for e in spool.admin.export("pending")]
    assert sum(values) == Decimal("999999999999999.001")
    assert all(len(v.normalize().as_tuple().digits) <= 15 for v in values)


def test_dimensions_fold_apart_and_keep_their_keys(spool: Spool) -> None:
    for dims in ({"model": "a", "region": "eu"}, {"region": "eu", "model": "a"}, {"model": "b"}):
        spool.append_use("tokens", "cus_1", 5, 0.0, 5.0, encode_dimensions(dims))
    assert spool.aggregate_due(10.0) == 2
    by_dims = {str(e["dimensions"]): e["value"] for e in spool.admin.export("pending")}
    assert by_dims == {str({"model": "a", "region": "eu"}): 10, str({"model": "b"}): 5}


def test_a_use_arriving_after_its_window_was_folded_is_billed_under_a_new_identifier(
    spool: Spool,
) -> None:
    _use(spool, "cus_1", 10, 1000.0)
    assert spool.aggregate_due(1010.0) == 1
    first = _identifiers(spool)
    _use(spool, "cus_1", 5, 1000.0)  # late: same key, same window
    assert spool.aggregate_due(1010.0) == 1
    both = _identifiers(spool)
    assert len(both) == 2 and len(set(both)) == 2 and both[0] == first[0]
    assert _pending_totals(spool) == {("tokens", "cus_1"): 15}


def test_a_crash_inside_the_fold_transaction_loses_and_doubles_nothing(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(1, 101):
        _use(spool, f"cus_{n % 3}", n, 1000.0)

    def crash(*args: object) -> None:
        raise RuntimeError("killed between reading the uses and the commit")

    monkeypatch.setattr(_fold_store, "_delete_uses", crash)
    with pytest.raises(RuntimeError):
        spool.aggregate_due(2000.0)
    assert spool.uses_count() == 100
    assert spool.pending_count() == 0  # the folded events went with the rollback
    monkeypatch.undo()

    assert spool.aggregate_due(2000.0) == 3
    totals = _pending_totals(spool)
    assert sum(totals.values()) == sum(range(1, 101))
    assert spool.uses_count() == 0


def test_two_processes_folding_at_once_fold_each_use_once(spool: Spool, spool_path: str) -> None:
    expected: dict[str, int] = defaultdict(int)
    for n in range(3000):
        customer = f"cus_{n % 7}"
        _use(spool, customer, n, 1000.0 + WINDOW * (n % 50))
        expected[customer] += n
    aggregators = [
        subprocess.Popen(
            [sys.executable, "-m", "apps.aggregate_child", "aggregate", spool_path],
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for proc in aggregators:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    # Late uses of windows being folded, from this process, meanwhile.
    for n in range(3000, 3200):
        _use(spool, "cus_late", n, 1000.0)
        expected["cus_late"] += n
    made = []
    for proc in aggregators:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode(errors="replace")
        made.append(int(out))
    spool.aggregate_due(5000.0, force=True)
    totals = _pending_totals(spool)
    assert {customer: int(total) for (_, customer), total in totals.items()} == expected
    idents = _identifiers(spool)
    assert len(idents) == len(set(idents))
    assert sum(made) >= 7 * 50  # each window and customer folded once, by one of them


def test_a_refused_name_is_no_longer_folded(spool: Spool) -> None:
    aggregator = SpoolAggregator(spool, ["tokens", "calls"], WINDOW)
    assert aggregator.add("calls", "cus_1", 1)
    assert aggregator.refuse("calls", "its meter aggregates with 'count', not 'sum'")
    assert not aggregator.add("calls", "cus_1", 1)
    assert aggregator.add("tokens", "cus_1", 2.5)
    assert aggregator.stats()["aggregate_refused"] == 1
    assert aggregator.stats()["aggregated_uses"] == 2
    aggregator.close(force=True)
    assert _pending_totals(spool) == {
        ("calls", "cus_1"): Decimal(1),
        ("tokens", "cus_1"): Decimal("2.5"),
    }


def test_values_that_cannot_be_folded_exactly_are_left_to_the_caller(spool: Spool) -> None:
    aggregator = SpoolAggregator(spool, ["tokens"], WINDOW)
    assert not aggregator.add("tokens", "cus_1", 1e-300)
    assert not aggregator.add("tokens", "cus_1", Decimal("1E-70"))
    assert aggregator.add("tokens", "cus_1", 10**30)  # past SQLite's integers: stored as text
    aggregator.close(force=True)
    assert _pending_totals(spool) == {("tokens", "cus_1"): Decimal(10**30)}


def test_the_spool_status_command_counts_uses_waiting_to_fold(
    spool: Spool, spool_path: str, tmp_path: Path
) -> None:
    _use(spool, "cus_1", 1, 1000.0)
    _use(spool, "cus_1", 2, 1000.0)
    proc = subprocess.run(
        [sys.executable, "-m", "meterstream", "spool", "status", "--spool", spool_path, "--json"],
        env=child_env(),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert '"uses_to_fold": 2' in proc.stdout.decode()


def test_a_client_without_aggregate_delivers_the_uses_a_previous_process_left(
    spool: Spool,
    spool_path: str,
    emulator: Emulator,
    make_client: Callable[..., meterstream.MeterClient],
) -> None:
    now = time.time()
    _use(spool, "cus_left", 4, now - 60)
    _use(spool, "cus_left", Decimal("0.5"), now - 60)
    client = make_client(emulator.url, spool_path=spool_path)
    assert client.flush(30), client.stats()
    assert emulator.state.total("tokens", "cus_left").sum == 4.5
    assert spool.uses_count() == 0


def test_dimensions_given_as_a_key_fold_with_those_given_as_a_dict(spool: Spool) -> None:
    aggregator = SpoolAggregator(spool, ["tokens"], WINDOW)
    assert aggregator.add("tokens", "cus_1", 1, {"b": "2", "a": "1"})
    assert aggregator.add("tokens", "cus_1", 2, (("a", "1"), ("b", "2")))
    aggregator.close(force=True)
    assert [(e["dimensions"], e["value"]) for e in spool.admin.export("pending")] == [
        ({"a": "1", "b": "2"}, 3)
    ]


def test_a_long_fold_is_cut_into_transactions_that_each_fold_once(spool: Spool) -> None:
    for n in range(250):
        _use(spool, f"cus_{n % 2}", n, 1000.0)
    assert spool.aggregate_due(2000.0, chunk=100) == 6  # two customers, three transactions
    assert _pending_totals(spool) == {
        ("tokens", "cus_0"): sum(range(0, 250, 2)),
        ("tokens", "cus_1"): sum(range(1, 250, 2)),
    }
    assert spool.uses_count() == 0
    idents = _identifiers(spool)
    assert len(set(idents)) == 6


def test_uses_of_a_name_whose_meter_counts_go_to_pending_unfolded(
    spool_path: str,
    emulator: Emulator,
    make_client: Callable[..., meterstream.MeterClient],
) -> None:
    emulator.state.create_meter(
        {"event_name": "tokens", "display_name": "tokens", "default_aggregation[formula]": "count"}
    )
    client = make_client(emulator.url, spool_path=spool_path, aggregate={"tokens": "sum"})
    client.record("tokens", 1, customer="cus_count")  # starts delivery, which checks the meter
    assert wait_for(lambda: client.stats()["aggregate_refused"] == 1)
    for _ in range(5):
        client.record("tokens", 1, customer="cus_count")
    assert client.stats()["aggregate_waiting"] <= 1  # only the use made before the check
    assert client.flush(30), client.stats()
    # The one use made before the check may have been folded; the five after were not.
    assert emulator.state.total("tokens", "cus_count").count >= 6
