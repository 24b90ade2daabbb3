"""Group commit: threads appending at once share a transaction, and its outcome.

Each caller returns only once the transaction holding its row committed; when
that transaction fails, every caller in it gets the failure, and no other.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

import pytest

import meterstream
from helpers.poll import wait_for
from helpers.spool import assert_each_once, child, kill_when
from meterstream._spool.spool import Spool
from meterstream.emulator import Emulator

THREADS = 8


def _event(ident: str) -> tuple[str, str, int, float, str, None]:
    return ("api_calls", "cus_group", 1, time.time(), ident, None)


def _identifiers_by_seq(spool: Spool) -> list[str]:
    return [
        ident
        for (ident,) in spool._db.execute("SELECT identifier FROM pending ORDER BY seq").fetchall()
    ]


def test_eight_threads_appending_store_every_row_once_in_each_threads_order(
    spool_path: str,
) -> None:
    per_thread = 400
    spool = Spool(spool_path)
    start = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def worker(index: int) -> None:
        start.wait()
        try:
            for n in range(per_thread):
                spool.append_row(_event(f"t{index}-{n}"))
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(120)
    try:
        assert not failures
        stored = _identifiers_by_seq(spool)
        assert len(stored) == THREADS * per_thread
        assert len(set(stored)) == len(stored), "a row was stored twice"
        order: dict[str, list[int]] = defaultdict(list)
        for ident in stored:
            thread, n = ident[1:].split("-")
            order[thread].append(int(n))
        assert all(ns == list(range(per_thread)) for ns in order.values())
    finally:
        spool.close()


class _Gate:
    """A SQL function a trigger calls for each row inserted into ``pending``:
    it holds the inserting transaction open on ``hold-*`` identifiers until
    told, and fails the statement on ``poison`` (an error SQLite reports as
    it would a full disk: the statement, and so the transaction, fails)."""

    def __init__(self, spool: Spool) -> None:
        self.entered = {name: threading.Event() for name in ("hold-1", "hold-2")}
        self.opened = {name: threading.Event() for name in ("hold-1", "hold-2")}
        spool._db.create_function("gate", 1, self, deterministic=False)
        spool._db.execute(
            "CREATE TEMP TRIGGER gate BEFORE INSERT ON main.pending "
            "BEGIN SELECT gate(NEW.identifier); END"
        )

    def __call__(self, ident: str) -> int:
        if ident in self.entered:
            self.entered[ident].set()
            self.opened[ident].wait(60)
        if ident == "poison":
            raise ValueError("injected failure")
        return 0


def _append_in_thread(
    spool: Spool, ident: str, outcomes: dict[str, Optional[BaseException]]
) -> threading.Thread:
    def run() -> None:
        try:
            spool.append_row(_event(ident))
        except BaseException as exc:
            outcomes[ident] = exc
        else:
            outcomes[ident] = None

    thread = threading.Thread(target=run, name=ident)
    thread.start()
    return thread


def _queued(spool: Spool) -> int:
    return spool._group.queued


def test_a_row_that_fails_in_a_group_fails_only_its_own_caller(spool_path: str) -> None:
    spool = Spool(spool_path)
    gate = _Gate(spool)
    outcomes: dict[str, Optional[BaseException]] = {}
    threads = []
    try:
        # hold-1 inserts alone and holds the connection open ...
        threads.append(_append_in_thread(spool, "hold-1", outcomes))
        assert gate.entered["hold-1"].wait(30)
        # ... while group A queues behind it: hold-2 first, poison among them.
        group_a = ["hold-2", "a-0", "a-1", "poison", "a-2", "a-3", "a-4"]
        threads.append(_append_in_thread(spool, group_a[0], outcomes))
        assert wait_for(lambda: _queued(spool) == 1, 30)
        for ident in group_a[1:]:
            threads.append(_append_in_thread(spool, ident, outcomes))
        assert wait_for(lambda: _queued(spool) == len(group_a), 30)
        gate.opened["hold-1"].set()
        # Group A's transaction holds at hold-2 while group B queues behind it.
        assert gate.entered["hold-2"].wait(30)
        group_b = [f"b-{n}" for n in range(4)]
        for ident in group_b:
            threads.append(_append_in_thread(spool, ident, outcomes))
        assert wait_for(lambda: _queued(spool) == len(group_b), 30)
        gate.opened["hold-2"].set()
        for thread in threads:
            thread.join(60)

        assert outcomes["hold-1"] is None
        # The poisoned row fails its own caller only: the others of its group
        # are tried again on their own and stored (a thread recording a
        # well-formed use never pays for another's bad one).
        error = outcomes["poison"]
        assert isinstance(error, sqlite3.OperationalError), error
        assert "gate" in str(error) or "user-defined function" in str(error)
        fine = [ident for ident in group_a if ident != "poison"]
        assert all(outcomes[ident] is None for ident in fine + group_b), outcomes
        # Everything that returned is stored, once; nothing else is.
        stored = _identifiers_by_seq(spool)
        assert sorted(stored) == sorted(["hold-1", *fine, *group_b])
    finally:
        for event in gate.opened.values():
            event.set()
        for thread in threads:
            thread.join(60)
        spool.close()


def _refuse_some(ident: str) -> int:
    if ident.endswith("7"):
        raise OSError("injected: disk full")
    return 0


def test_failed_groups_under_eight_inserting_threads_fail_each_caller_once(
    spool_path: str,
) -> None:
    """Rows of the SQLite file (aggregated events, the uses) go through group
    commit: a row refused inside a shared transaction fails only its caller."""
    per_thread = 300
    spool = Spool(spool_path)
    # One in ten inserts fails in SQLite, and with it the transaction it is in.
    spool._db.create_function("refuse_some", 1, _refuse_some)
    spool._db.execute(
        "CREATE TEMP TRIGGER refuse BEFORE INSERT ON main.pending "
        "BEGIN SELECT refuse_some(NEW.identifier); END"
    )
    start = threading.Barrier(THREADS)
    failed: list[str] = []
    unexpected: list[BaseException] = []

    def worker(index: int) -> None:
        start.wait()
        for n in range(per_thread):
            ident = f"f{index}-{n}"
            try:
                spool.append_row(("api_calls", "cus_fail", 1, 1.0, ident, None))
            except sqlite3.Error:
                failed.append(ident)
            except BaseException as exc:
                unexpected.append(exc)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    try:
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(120)
        assert not unexpected
        stored = _identifiers_by_seq(spool)
        # Every caller was told the truth: what did not fail is stored, once.
        assert sorted(failed) == sorted(
            f"f{i}-{n}" for i in range(THREADS) for n in range(per_thread) if str(n).endswith("7")
        )
        assert len(stored) == len(set(stored)) == THREADS * per_thread - len(failed)
        assert not [ident for ident in stored if ident.endswith("7")]
    finally:
        spool.close()


KILLS = 6


def _every_thread_recorded(at_least: int, errors: Path) -> Callable[[list[str]], None]:
    """Wait until *at_least* lines came, from every thread."""

    def moment(lines: list[str]) -> None:
        def done() -> bool:
            seen = list(lines)
            return len(seen) >= at_least and len({line.split("-")[1] for line in seen}) == THREADS

        assert wait_for(done, 60), errors.read_text()

    return moment


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_while_eight_threads_record_loses_nothing_record_returned_for(
    tmp_path: Path,
    emulator: Emulator,
    dead_url: str,
    spool_path: str,
    make_client: Callable[..., meterstream.MeterClient],
) -> None:
    returned: list[str] = []
    for run in range(KILLS):
        errors = tmp_path / f"stderr-{run}.txt"
        with errors.open("wb") as stderr:
            proc = child(
                "record",
                spool_path,
                dead_url,
                f"run{run}",
                str(THREADS),
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        # Kill once the child is well into recording: a moment that varies by run.
        lines = kill_when(proc, _every_thread_recorded(200 + 150 * run, errors), errors)
        returned.extend(lines)

    client = make_client(emulator.url, spool_path=spool_path)
    assert client.flush(120), client.stats()
    arrived = assert_each_once(emulator, set(returned))
    # Events recorded but killed before their line was written may arrive too;
    # nothing else may.
    assert all(ident.startswith("run") for ident in arrived)
    assert client.stats()["failed_rejected"] == 0
