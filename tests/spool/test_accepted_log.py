"""The accepted history's log: a batch Stripe accepted is one row, moved into
``accepted`` later, and every reader of the history sees it before then."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from typing import Any

import pytest

import meterstream
from helpers import cli
from helpers.clients import ClientFactory
from helpers.spool import API_KEY
from helpers.webhooks import BY_ACCOUNT_METER, WHSEC, reported_thin_events, signed
from meterstream._spool import history, sink
from meterstream._spool.schema import Transaction
from meterstream._spool.sink import SpoolBuffer
from meterstream._spool.spool import Spool
from meterstream.emulator import Emulator

HOUR = 3600


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    """Meters made on first use, and ``by_account``, which reads its customer
    from the payload key ``account``: Stripe reports its events later."""
    return {
        "auto_create_meters": True,
        "meters": [BY_ACCOUNT_METER],
    }


@pytest.fixture
def no_idle_catch_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Delivery's tick (which catches up when idle) runs once, at its first
    wake, and not again: what the log holds stays there for the reader."""
    monkeypatch.setattr(sink, "TICK", 3600.0)


def log(spool: Spool, events: list[tuple[Any, ...]], at: float) -> int:
    """Log one accepted batch, as delivery does."""
    with spool._lock, Transaction(spool._db):
        return history.log_accepted(spool._db, events, at)


def logged(path: str) -> int:
    """Rows in the log, read by a connection of its own."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        count: int = db.execute("SELECT count(*) FROM accepted_log").fetchone()[0]
        return count
    finally:
        db.close()


def accepted_rows(path: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(
            "SELECT identifier, event_name, customer, value, ts, accepted_at FROM accepted "
            "ORDER BY identifier"
        ).fetchall()
    finally:
        db.close()


# -- catch_up itself --------------------------------------------------------------------------


def test_catch_up_keeps_each_identifier_once_with_its_first_acceptance_and_exact_values(
    spool_path: str,
) -> None:
    spool = Spool(spool_path)
    try:
        ts = time.time() - 60
        first = [
            ("api", "cus_1", Decimal("0.125"), ts, "a", None),
            ("api", "cus_1", 10**20, ts + 1, "b", None),
            ("api", "cus_2", 1.5, ts + 2, "c", {"model": "m"}),
        ]
        again = [
            ("api", "cus_1", Decimal("0.125"), ts, "a", None),
            ("api", "cus_2", 7, ts, "d", None),
        ]
        assert log(spool, first, 100.0) == 1
        assert log(spool, again, 200.0) == 2  # ids only grow
        assert accepted_rows(spool_path) == []
        with spool._lock, Transaction(spool._db):
            assert history.catch_up(spool._db) == 5
        assert accepted_rows(spool_path) == [
            ("a", "api", "cus_1", "0.125", ts, 100.0),  # the first acceptance, not the repeat
            ("b", "api", "cus_1", str(10**20), ts + 1, 100.0),
            ("c", "api", "cus_2", 1.5, ts + 2, 100.0),
            ("d", "api", "cus_2", 7, ts, 200.0),
        ]
        assert logged(spool_path) == 0
        assert log(spool, again, 300.0) == 3  # not reused once the log is empty
        values = {row[2]: row[2] for row in spool.accepted_between(0, ts + 10)}
        assert values == {Decimal("0.125"): Decimal("0.125"), 10**20: 10**20, 1.5: 1.5, 7: 7}
    finally:
        spool.close()


def test_an_event_already_in_the_history_keeps_its_row(spool_path: str) -> None:
    spool = Spool(spool_path)
    try:
        ts = time.time()
        log(spool, [("api", "cus_1", 1, ts, "x", None)], 100.0)
        assert spool.catch_up_history() == 1
        log(spool, [("api", "cus_1", 1, ts, "x", None)], 300.0)  # sent again after a crash
        assert spool.catch_up_history() == 1
        assert accepted_rows(spool_path) == [("x", "api", "cus_1", 1, ts, 100.0)]
    finally:
        spool.close()


_CATCHER = textwrap.dedent(
    """
    import sys
    from meterstream._spool import history
    from meterstream._spool.schema import Transaction
    from meterstream._spool.spool import Spool

    path, tag = sys.argv[1], sys.argv[2]
    spool = Spool(path)
    print("ready", flush=True)
    sys.stdin.readline()
    moved = 0
    for k in range(150):
        batch = [("api", "cus_1", 1, 1000.0 + k, f"{tag}-{k}-{j}", None) for j in range(40)]
        batch.append(("api", "cus_1", 1, 1000.0 + k, f"both-{k}", None))
        with spool._lock, Transaction(spool._db):
            history.log_accepted(spool._db, batch, float(k))
        if k % 3 == 0:
            moved += spool.catch_up_history()
    spool.close()
    print(moved, flush=True)
    """
)


def test_two_processes_logging_and_catching_up_at_once_lose_and_double_nothing(
    spool_path: str,
) -> None:
    Spool(spool_path).close()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CATCHER, spool_path, tag],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for tag in ("p", "q")
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
    for child in children:  # both start together
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    moved = 0
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0
        moved += int(out)
    spool = Spool(spool_path)
    try:
        moved += spool.catch_up_history()
        # Every logged event was moved once: 2 processes x 150 batches x 41 events.
        assert moved == 2 * 150 * 41
        rows = accepted_rows(spool_path)
        identifiers = [row[0] for row in rows]
        expected = {f"{tag}-{k}-{j}" for tag in "pq" for k in range(150) for j in range(40)}
        expected |= {f"both-{k}" for k in range(150)}
        assert len(identifiers) == len(expected) and set(identifiers) == expected
        assert logged(spool_path) == 0
    finally:
        spool.close()


_KILLED = textwrap.dedent(
    """
    import os, signal, sys, time
    from meterstream._spool.spool import Spool

    spool = Spool(sys.argv[1])
    now = time.time()
    for n in range(30):
        spool.append(("api", "cus_1", n, now - 60 + n, f"k-{n}", None))
    spool.accepted_events(spool.journal.take(30))
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_sigkill_after_the_log_commits_loses_nothing(spool_path: str) -> None:
    child = subprocess.run([sys.executable, "-c", _KILLED, spool_path], timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert logged(spool_path) == 1  # one row: the batch, not yet moved
    spool = Spool(spool_path)
    try:
        rows = spool.accepted_between(0, time.time() + 1)
        assert sorted(row[2] for row in rows) == list(range(30))
        assert spool.pending_count() == 0  # settled before the kill: not sent again
    finally:
        spool.close()


# -- when catch-up runs -----------------------------------------------------------------------


def test_a_batch_that_takes_the_log_past_its_bound_catches_up_counting_every_process(
    spool_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history, "LOG_BOUND", 3)
    spool = Spool(spool_path)
    other = Spool(spool_path)  # another process's handle on the file
    try:
        now = time.time()
        for n in range(350):
            spool.append(("api", "cus_1", 1, now, f"b-{n}", None))
        for _ in range(2):
            spool.accepted_events(spool.journal.take(50))
        log(other, [("api", "cus_1", 1, now, "o-1", None)], now)
        assert logged(spool_path) == 3 and accepted_rows(spool_path) == []
        spool.accepted_events(spool.journal.take(50))  # 4 batches > 3: caught up at once
        assert logged(spool_path) == 0
        assert len(accepted_rows(spool_path)) == 151
        for _ in range(3):
            spool.accepted_events(spool.journal.take(50))
        assert logged(spool_path) == 3  # counted from where the log starts now
        other.catch_up_history()
        spool.accepted_events(spool.journal.take(50))
        assert logged(spool_path) == 1  # the other's catch-up seen: no early catch-up
    finally:
        other.close()
        spool.close()


def test_the_tick_catches_up_when_nothing_waits_and_not_while_events_do(spool_path: str) -> None:
    spool = Spool(spool_path)
    try:
        buffer = SpoolBuffer(spool)
        log(spool, [("api", "cus_1", 1, time.time(), "t-1", None)], time.time())
        spool.append(("api", "cus_1", 1, time.time(), "t-2", None))
        buffer.tick()  # t-2 waits to be sent: delivery comes first
        assert logged(spool_path) == 1
        spool.accepted_events(spool.journal.take(10))
        buffer.take(10)  # nothing fresh, no marker: idle
        buffer._next_tick = 0.0
        buffer.tick()
        assert logged(spool_path) == 0
        assert [row[0] for row in accepted_rows(spool_path)] == ["t-1", "t-2"]
    finally:
        spool.close()


def test_pruning_to_a_size_moves_the_log_into_the_history_and_prunes_it_oldest_first(
    spool_path: str,
) -> None:
    spool = Spool(spool_path)
    try:
        now = time.time()
        for k in range(40):
            log(spool, [("api", "cus_1", 1, now + k, f"s-{k}-{j}", None) for j in range(100)], now)
        # The log counts in the spool's size; the same events take more room
        # in the history's table, so some must go.
        spool.prune_history(keep_bytes=spool.size_bytes() - 1)
        assert logged(spool_path) == 0
        kept = sorted(row[4] for row in accepted_rows(spool_path))
        assert 0 < len(kept) < 4000
        assert len(kept) == 100 * sum(1 for k in range(40) if now + k >= kept[0])  # the newest
    finally:
        spool.close()


def test_a_schema_3_file_opens_as_it_is_with_an_empty_log(spool_path: str) -> None:
    spool = Spool(spool_path)
    spool._db.execute("DROP TABLE accepted_log")
    spool._db.execute("PRAGMA user_version=3")
    spool.close()
    again = Spool(spool_path)
    try:
        assert again._db.execute("PRAGMA user_version").fetchone()[0] == 4
        assert logged(spool_path) == 0
        assert again.catch_up_history() == 0
    finally:
        again.close()


# -- every reader sees a batch accepted a moment ago ------------------------------------------


def just_accepted(
    make_client: ClientFactory, emulator: Emulator, spool_path: str, **settings: Any
) -> meterstream.MeterClient:
    """A client with a spool whose flush() leaves the accepted batches in the log."""
    return make_client(emulator.url, spool_path=spool_path, flush_interval=3600, **settings)


def test_reconcile_right_after_a_flush_counts_the_logged_batches(
    emulator: Emulator, make_client: ClientFactory, spool_path: str, no_idle_catch_up: None
) -> None:
    client = just_accepted(make_client, emulator, spool_path)
    since = int(time.time()) // HOUR * HOUR - 2 * HOUR
    for n in range(20):
        client.record("api_calls", n, customer=f"cus_{n % 2}", timestamp=since + 60 + n)
    assert client.flush(10)
    assert logged(spool_path) >= 1
    assert client.spool is not None
    assert len(client.spool.accepted_between(since, since + HOUR)) == 20  # this process
    assert logged(spool_path) == 0
    client.record("api_calls", 100, customer="cus_0", timestamp=since + 90)
    assert client.flush(10)
    assert logged(spool_path) == 1
    # Another process (the command) reads the history while this one runs:
    # with the log left out, the spool would hold 100 less than Stripe.
    result = cli.run(
        "reconcile", "--spool", spool_path, "--base", emulator.url, "--api-key", API_KEY,
        "--since", str(since), "--until", str(since + HOUR), "--window", "hour",
        "--grace", "0", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["agrees"]
    assert logged(spool_path) == 0


def test_cancel_of_a_just_accepted_event_is_queued(
    emulator: Emulator, make_client: ClientFactory, spool_path: str, no_idle_catch_up: None
) -> None:
    client = just_accepted(make_client, emulator, spool_path)
    first = client.record("api", 3, customer="cus_1")
    client.record("api", 4, customer="cus_1")
    assert client.flush(10)
    assert logged(spool_path) >= 1
    assert client.cancel(first, "api") == "queued"
    assert client.flush(10)
    assert client.stats()["cancels_sent"] == 1


def test_a_webhook_report_buries_a_just_accepted_event(
    emulator: Emulator, make_client: ClientFactory, spool_path: str, no_idle_catch_up: None
) -> None:
    client = just_accepted(make_client, emulator, spool_path, webhook_secret=WHSEC)
    # The client sends the customer as stripe_customer_id; by_account reads
    # "account": Stripe accepts the event, then reports it.
    client.record("by_account", customer="cus_1", identifier="nocust-1")
    client.record("api", customer="cus_1", identifier="fine-1")
    assert client.flush(10)
    assert logged(spool_path) >= 1
    for event in reported_thin_events(emulator):
        meterstream.handle_webhook(*signed(event), client=client)
    assert client.spool is not None
    (letter,) = list(client.spool.admin.export("dead"))
    assert letter["identifier"] == "nocust-1"
    assert [row[0] for row in accepted_rows(spool_path)] == ["fine-1"]


def test_the_spool_commands_of_another_process_see_the_log(
    emulator: Emulator, make_client: ClientFactory, spool_path: str, no_idle_catch_up: None
) -> None:
    client = just_accepted(make_client, emulator, spool_path)
    now = time.time()
    for n in range(5):
        client.record("api", Decimal("0.5") if n == 0 else n, customer="cus_1",
                      identifier=f"x-{n}", timestamp=now - 10 + n)  # fmt: skip
    assert client.flush(10)
    assert logged(spool_path) >= 1
    usage = cli.run("usage", "--spool", spool_path, "--json")  # read-only: reads the log as is
    assert usage.returncode == 0, usage.stderr
    (row,) = [json.loads(line) for line in usage.stdout.splitlines()]
    assert row["accepted_events"] == 5 and Decimal(str(row["accepted_value"])) == Decimal("10.5"), (
        row
    )
    assert logged(spool_path) >= 1  # nothing written
    status = cli.run("spool", "status", "--spool", spool_path, "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["accepted"] == 5
    assert logged(spool_path) == 0  # caught up, by the command
    assert client.spool is not None
    log(client.spool, [("api", "cus_1", 9, now, "x-9", None)], now)
    export = cli.run("spool", "export", "--accepted", "--spool", spool_path)
    assert export.returncode == 0, export.stderr
    rows = [json.loads(line) for line in export.stdout.splitlines()]
    assert [r["identifier"] for r in rows] == ["x-0", "x-1", "x-2", "x-3", "x-4", "x-9"]
    assert rows[0]["value"] == "0.5"


def test_a_reader_in_this_process_sees_the_log_without_a_tick(
    spool_path: str,
) -> None:
    spool = Spool(spool_path)
    try:
        now = time.time()
        log(spool, [("api", "cus_1", 2, now, "r-1", None)], now)
        assert spool.admin.status().accepted == 1
        log(spool, [("api", "cus_1", 2, now, "r-2", None)], now)
        found = spool.cancellations.accepted_event("r-2")
        assert found is not None and found.value == 2
        log(spool, [("api", "cus_2", 2, now, "r-3", None)], now)
        assert [
            e.identifier for e in spool.cancellations.accepted_for("cus_2", "api", 0, now + 1)
        ] == ["r-3"]
        log(spool, [("api", "cus_2", 2, now, "r-4", None)], now)
        assert len(spool.cancellations.billed_between(0, now + 1)) == 4
    finally:
        spool.close()


def test_stats_reads_the_spool_and_leaves_the_log_as_it_is(
    emulator: Emulator, make_client: ClientFactory, spool_path: str, no_idle_catch_up: None
) -> None:
    """``stats()`` (and the OpenTelemetry gauges it feeds) does not report the
    history, so it never takes the write lock to fold the log in."""
    client = just_accepted(make_client, emulator, spool_path)
    for n in range(5):
        client.record("api", n, customer="cus_1")
    assert client.flush(10)
    before = logged(spool_path)
    assert before >= 1
    stats = client.stats()
    assert stats["spool_pending"] == 0
    assert logged(spool_path) == before
    assert client.spool is not None
    assert client.spool.admin.status().accepted == 5  # the command's count folds it in
    assert logged(spool_path) == 0
