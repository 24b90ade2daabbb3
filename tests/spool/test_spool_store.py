"""The spool's storage layer on real SQLite files: durability, claims, leases, repair."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from meterstream._record.events import identifier_prefix
from meterstream._spool.spool import DeadLetter, Spool, SpoolFull
from meterstream.errors import ConfigurationError


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def event(n: int, **changes: Any) -> tuple[Any, ...]:
    base: dict[str, Any] = {
        "name": "api_calls",
        "customer": "cus_1",
        "value": n,
        "ts": 1_700_000_000.0 + n,
        "ident": f"id-{n}",
        "dims": None,
    }
    base.update(changes)
    return tuple(base.values())


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "spool.db")


def test_events_come_back_as_recorded_with_their_types(path: str) -> None:
    spool = Spool(path)
    spool.append_row(event(1, value=25))
    spool.append_row(event(2, value=0.125))
    spool.append_row(event(3, value=Decimal("1.50")))
    spool.append_row(event(4, dims={"model": "gpt-4o", "région": "eu"}))
    spool.append_row(event(5, ident=77))  # a generated sequence number
    batch = spool.claim(10)
    values = [e[2] for e in batch.events]
    assert values == [25, 0.125, Decimal("1.50"), 4, 5]
    assert [type(v) for v in values] == [int, float, Decimal, int, int]
    assert batch.events[3][5] == {"model": "gpt-4o", "région": "eu"}
    assert batch.events[4][4] == identifier_prefix() + "77"
    assert batch.events[0] == event(1, value=25)
    spool.close()


def test_an_event_survives_closing_and_reopening(path: str) -> None:
    spool = Spool(path)
    spool.append_row(event(1))
    spool.close()
    again = Spool(path)
    assert [e[4] for e in again.claim(10).events] == ["id-1"]
    again.close()


def test_claims_are_oldest_first_and_never_shared(path: str) -> None:
    a, b = Spool(path), Spool(path)
    for n in range(10):
        a.append_row(event(n))
    first = a.claim(4)
    second = b.claim(4)
    third = a.claim(4)
    assert [e[4] for e in first.events] == [f"id-{n}" for n in range(4)]
    assert [e[4] for e in second.events] == [f"id-{n}" for n in range(4, 8)]
    assert [e[4] for e in third.events] == ["id-8", "id-9"]
    assert len(a.claim(4)) == 0
    a.close()
    b.close()


def test_acknowledged_events_leave_and_released_ones_wait_their_delay(path: str) -> None:
    clock = Clock()
    spool = Spool(path, clock=clock)
    for n in range(3):
        spool.append_row(event(n))
    batch = spool.claim(3)
    assert spool.ack(batch.seqs[:2]) == 2
    spool.release(batch.seqs[2:], delay=30)
    assert len(spool.claim(3)) == 0
    clock.now += 31
    again = spool.claim(3)
    assert [e[4] for e in again.events] == ["id-2"]
    assert again.attempts == [1]
    assert spool.pending_count() == 1
    spool.close()


def test_a_claim_runs_out_and_another_process_takes_over(path: str) -> None:
    clock = Clock()
    holder = Spool(path, clock=clock, lease=30)
    other = Spool(path, clock=clock, lease=30)
    holder.append_row(event(1))
    assert len(holder.claim(10)) == 1
    clock.now += 20
    holder.renew()  # still alive: the lease moves on
    clock.now += 20
    assert len(other.claim(10)) == 0
    clock.now += 11
    taken = other.claim(10)
    assert [e[4] for e in taken.events] == ["id-1"]
    holder.close()
    other.close()


def test_the_claims_of_a_killed_process_are_freed_at_once(path: str) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from meterstream._spool.spool import Spool
        spool = Spool({path!r}, lease=3600)
        spool.append_row(("api_calls", "cus_1", 1, time.time(), "id-killed", None))
        assert len(spool.claim(10)) == 1
        print("claimed", flush=True)
        time.sleep(60)
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "claimed"
        finally:
            child.send_signal(signal.SIGKILL)
    spool = Spool(path, lease=3600)  # opening reaps the dead owner
    assert [e[4] for e in spool.claim(10).events] == ["id-killed"]
    spool.close()


def test_what_record_returned_survives_sigkill(path: str) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from meterstream._spool.spool import Spool
        spool = Spool({path!r})
        n = 0
        while True:
            spool.append_row(("api_calls", "cus_1", 1, time.time(), f"id-{{n}}", None))
            sys.stdout.write(f"{{n}}\\n")
            sys.stdout.flush()
            n += 1
        """
    )
    returned = []
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            returned.append(int(line))
            if len(returned) >= 2000:
                break
        child.send_signal(signal.SIGKILL)
        returned += [int(n) for n in child.stdout.read().split()]
    spool = Spool(path)
    stored = {e[4] for e in spool.claim(1_000_000).events}
    assert {f"id-{n}" for n in returned} <= stored
    spool.close()


def test_dead_letters_keep_their_reason_and_can_be_replayed(path: str) -> None:
    spool = Spool(path)
    for n in range(4):
        spool.append_row(event(n, name="a" if n < 2 else "b"))
    batch = spool.claim(4)
    spool.bury(
        [
            DeadLetter(batch.seqs[0], "rejected", "parameter_invalid", "bad"),
            DeadLetter(batch.seqs[2], "too_old", None, "older than 35 days"),
        ]
    )
    status = spool.admin.status()
    assert status.pending == 2 and status.dead == 2
    assert status.dead_by_reason == {("a", "rejected"): 1, ("b", "too_old"): 1}
    dead = list(spool.admin.export("dead"))
    assert [(d["identifier"], d["reason"], d["code"]) for d in dead] == [
        ("id-0", "rejected", "parameter_invalid"),
        ("id-2", "too_old", None),
    ]
    assert spool.admin.replay(reason="rejected") == 1
    assert spool.admin.status().dead == 1
    ids = {e["identifier"] for e in spool.admin.export("pending")}
    assert "id-0" in ids  # same identifier: Stripe's dedupe still covers it
    assert spool.admin.purge("dead") == 1
    assert spool.admin.status().dead == 0
    spool.close()


def test_events_can_be_buried_by_identifier(path: str) -> None:
    spool = Spool(path)
    spool.append_row(event(1))
    spool.append_row(event(2))
    assert spool.bury_identifiers(["id-2", "unknown"], "no_meter", "no_meter", "m") == 1
    assert [d["identifier"] for d in spool.admin.export("dead")] == ["id-2"]
    spool.close()


def test_a_full_spool_refuses_appends(path: str) -> None:
    spool = Spool(path, max_bytes=64 * 1024)
    with pytest.raises(SpoolFull):
        for n in range(100_000):
            spool.append_row(event(n, customer="cus_" + "x" * 200))
    assert spool.full
    assert spool.pending_count() < 100_000
    spool.close()


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(path: str) -> None:
    Path(path).write_text("my application's settings\n")
    with pytest.raises(ConfigurationError, match="spool_path.*not a SQLite database"):
        Spool(path)
    assert Path(path).read_text() == "my application's settings\n"


def test_a_corrupt_spool_is_moved_aside_not_deleted(path: str, tmp_path: Path) -> None:
    spool = Spool(path)
    for n in range(500):
        spool.append_row(event(n, customer="cus_" + "y" * 100))
    spool.close()
    data = bytearray(Path(path).read_bytes())
    data[4096:8192] = b"\xff" * 4096  # the second page: garbage
    Path(path).write_bytes(bytes(data))
    fresh = Spool(path)
    assert fresh.moved_aside is not None
    assert Path(fresh.moved_aside).read_bytes() == bytes(data)
    assert ".corrupt-" in os.path.basename(fresh.moved_aside)
    fresh.append(event(1))
    assert fresh.pending_count() == 1
    fresh.close()


def test_a_spool_that_cannot_be_created_names_the_setting(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = "/proc/meterstream-spool-test.db"  # not even root may create files there
    else:
        directory = tmp_path / "read-only"
        directory.mkdir()
        directory.chmod(0o555)
        target = str(directory / "spool.db")
    with pytest.raises(ConfigurationError, match="spool_path"):
        Spool(target)


def test_a_missing_directory_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="spool_path.*does not exist"):
        Spool(str(tmp_path / "nowhere" / "spool.db"))


def test_a_spool_from_a_newer_version_is_refused(path: str) -> None:
    Spool(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(ConfigurationError, match="newer meterstream"):
        Spool(path)


def test_a_forked_child_gets_its_own_owner(path: str) -> None:
    spool = Spool(path)
    spool.append_row(event(1))
    spool.append_row(event(2))
    assert len(spool.claim(1)) == 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            spool.after_fork_in_child()
            got = [e[4] for e in spool.claim(10).events]
            os.write(write, ",".join(got).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_got = pipe.read()
    os.waitpid(pid, 0)
    assert child_got == "id-2"  # the parent's claim stays the parent's
    spool.close()


def test_sync_full_and_bad_sync(path: str) -> None:
    spool = Spool(path, sync="full")
    spool.append_row(event(1))
    assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    spool.close()
    with pytest.raises(ConfigurationError, match="spool_sync"):
        Spool(path, sync="sometimes")


def test_append_is_fast_enough_to_be_on_the_record_path(path: str) -> None:
    # Not a benchmark (benchmarks/ has that): a guard against a design that
    # takes milliseconds (an fsync, a busy wait) per event.
    spool = Spool(path)
    started = time.perf_counter()
    for n in range(2000):
        spool.append_row(event(n))
    assert (time.perf_counter() - started) / 2000 < 0.002
    spool.close()


def test_accepted_events_are_kept_once_each_for_the_history(path: str) -> None:
    clock = Clock(now=1_700_000_100.0)
    spool = Spool(path, clock=clock, history=3600)
    spool.append_row(event(1))
    spool.append_row(event(2, ident="id-1"))  # the same identifier again: Stripe counts it once
    spool.append_row(event(3))
    spool.ack(spool.claim(10).seqs)
    kept = spool.accepted_between(0, 2e9)
    assert [(e[0], e[2], e[3]) for e in kept] == [
        ("api_calls", 1, 1_700_000_001.0),
        ("api_calls", 3, 1_700_000_003.0),
    ]
    assert spool.admin.status().accepted == 2
    clock.now += 3600
    assert spool.prune_history() == 2
    assert spool.accepted_between(0, 2e9) == []
    spool.close()


def test_no_history_keeps_nothing_accepted(path: str) -> None:
    spool = Spool(path, history=0)
    spool.append_row(event(1))
    spool.ack(spool.claim(10).seqs)
    assert spool.accepted_between(0, 2e9) == []
    spool.close()


def test_history_gives_way_to_a_size_bound(path: str) -> None:
    clock = Clock(now=1_700_000_000.0 + 10_000)
    spool = Spool(path, clock=clock)
    for n in range(3000):
        spool.append_row(event(n, customer="cus_" + "z" * 200))
    spool.ack(spool.claim(10_000).seqs)
    before = spool.size_bytes()
    spool.prune_history(keep_bytes=before // 2)
    left = spool.accepted_between(0, 2e9)
    assert 0 < len(left) < 3000
    assert left[0][3] > 1_700_000_000.0 + 100  # the oldest went first
    spool.close()


def test_a_late_report_moves_accepted_events_to_the_dead_letters(path: str) -> None:
    spool = Spool(path)
    spool.append_row(event(1))
    spool.append_row(event(2))
    spool.ack(spool.claim(10).seqs)
    spool.append_row(event(3))  # still pending
    found = spool.bury_identifiers(["id-1", "id-3", "unknown"], "no_meter", "no_meter", "m")
    assert found == 2
    assert [(d["identifier"], d["code"]) for d in spool.admin.export("dead")] == [
        ("id-1", "no_meter"),
        ("id-3", "no_meter"),
    ]
    assert [e[1:3] for e in spool.accepted_between(0, 2e9)] == [("cus_1", 2)]
    assert spool.known_dead(["id-1", "id-2"]) == {"id-1"}
    spool.close()


def test_the_oldest_free_events_can_be_evicted(path: str) -> None:
    spool = Spool(path)
    for n in range(5):
        spool.append_row(event(n))
    held = spool.claim(1)  # id-0 is being sent: not evicted
    evicted = spool.evict_oldest(2)
    assert [e[4] for e in evicted] == ["id-1", "id-2"]
    assert {e["identifier"] for e in spool.admin.export("pending")} == {"id-0", "id-3", "id-4"}
    assert len(held) == 1
    spool.close()


def test_a_handled_stripe_event_is_remembered_across_handles(path: str) -> None:
    one, other = Spool(path), Spool(path)  # two processes on one spool
    assert not one.was_handled("evt_1")
    assert one.claim_event("evt_1")
    assert not other.claim_event("evt_1")  # taken: the other handles it not again
    assert other.was_handled("evt_1") and not other.was_handled("evt_2")
    assert other.claim_event("evt_2")
    other.release_event("evt_2")  # its handling failed: a later delivery may take it
    assert one.claim_event("evt_2")
    one.close()
    other.close()


def test_a_full_spool_lets_the_history_go_first(path: str) -> None:
    from meterstream._spool.sink import SpoolBuffer

    spool = Spool(path, max_bytes=1 << 20)
    buffer = SpoolBuffer(spool)
    n = 0
    while not spool.full:
        spool.append_row(event(n, customer="cus_" + "h" * 100))
        n += 1
    spool.ack(spool.claim(1_000_000).seqs)  # all accepted: history only
    spool.refresh_full()
    assert buffer.put(event(n + 1, customer="cus_new"))  # room made from the history
    assert spool.pending_count() == 1
    spool.close()
