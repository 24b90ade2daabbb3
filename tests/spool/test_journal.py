"""The journal on its own: frames, segments, cursors, recovery, withdrawal, a full disk."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from meterstream._spool import segment as segments
from meterstream._spool.frames import FRAME_HEADER, ScanReport, scan
from meterstream._spool.journal import Journal, JournalError, JournalFull
from meterstream._spool.segment import HEADER_SIZE

SRC = str(Path(__file__).resolve().parents[2] / "src")


def event(n: int, **more: Any) -> tuple[Any, ...]:
    fields: dict[str, Any] = {
        "name": "api_calls",
        "customer": "cus_1",
        "value": 1,
        "ts": 1_700_000_000.0 + n,
        "identifier": f"id-{n}",
        "dimensions": None,
    }
    fields.update(more)
    return tuple(fields.values())


def drain(journal: Journal, limit: int = 1000) -> list[tuple[Any, ...]]:
    """Take everything there is, settling as it goes."""
    out: list[tuple[Any, ...]] = []
    while True:
        batch = journal.take(limit)
        if not batch:
            return out
        journal.settle(batch)
        out.extend(batch)


def test_events_come_back_exactly(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path / "j"))
    values = [3, 2.5, Decimal("0.1"), 10**20, -(2**70), Decimal("1E+30")]
    for n, value in enumerate(values):
        journal.append(event(n, value=value, dimensions={"model": "x", "é": "ü"}))
    journal.append(("api_calls", "cus_2", 1, 5.0, 42, None))  # an int identifier is made text
    got = drain(journal)
    assert [e[2] for e in got[:-1]] == values
    assert all(type(a[2]) is type(b) for a, b in zip(got, values))
    assert got[0][5] == {"model": "x", "é": "ü"}
    assert isinstance(got[-1][4], str) and got[-1][4].endswith("_42")
    assert journal.pending() == 0
    journal.close()


def test_a_segment_rolls_over_and_goes_once_settled(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    journal = Journal(str(directory), segment_bytes=4096)
    for n in range(200):
        journal.append(event(n))
    assert len(segments.list_segments(str(directory))) > 3
    got = drain(journal, limit=37)
    assert [e[4] for e in got] == [f"id-{n}" for n in range(200)]
    # Every sealed, settled segment is gone; the one being written stays.
    assert len(segments.list_segments(str(directory))) == 1
    journal.close()
    assert segments.list_segments(str(directory)) == []


def test_the_cursor_moves_only_past_settled_events(tmp_path: Path) -> None:
    directory = str(tmp_path / "j")
    journal = Journal(directory)
    for n in range(10):
        journal.append(event(n))
    first, second = journal.take(4), journal.take(4)
    journal.settle(second)  # out of order: the cursor cannot move yet
    journal.give_back(first, delay=0.0)
    assert journal.pending() == 10 - 4
    abandon(journal)
    other = Journal(directory)
    assert other.adopt_orphans() == 10  # nothing before the unsettled first batch settled
    assert [e[4] for e in drain(other)] == [f"id-{n}" for n in range(10)]
    other.close()


def abandon(journal: Journal) -> None:
    """What a SIGKILL leaves: the files, unlocked, nothing sealed or deleted."""
    for source in journal._sources:
        source.seg.close()
    journal._sources = []


def test_given_back_events_come_first_when_due(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path / "j"))
    for n in range(5):
        journal.append(event(n))
    first = journal.take(2)
    journal.give_back(first, delay=60.0)
    assert [e[4] for e in journal.take(10)] == ["id-2", "id-3", "id-4"]
    assert [e[4] for e in journal.take(10, now=float("inf"))] == ["id-0", "id-1"]
    journal.close()


def test_withdraw_before_sending_only(tmp_path: Path) -> None:
    directory = str(tmp_path / "j")
    journal = Journal(directory)
    for n in range(5):
        journal.append(event(n))
    kept: list[str] = []
    taken = journal.take(1)
    assert journal.withdraw("id-0", kept.append) == "in_flight"  # being sent
    assert journal.withdraw("id-3", kept.append) == "withdrawn"
    assert journal.withdraw("id-99", kept.append) is None
    assert kept == ["id-3"]
    journal.settle(taken)
    assert [e[4] for e in drain(journal)] == ["id-1", "id-2", "id-4"]
    assert journal.pending() == 0
    journal.close()


def test_a_withdrawal_holds_for_the_process_that_adopts(tmp_path: Path) -> None:
    directory = str(tmp_path / "j")
    journal = Journal(directory)
    for n in range(3):
        journal.append(event(n))
    gone: set[str] = set()
    assert journal.withdraw("id-1", gone.add) == "withdrawn"
    abandon(journal)
    other = Journal(directory, withdrawn=lambda: set(gone))
    other.adopt_orphans()
    assert [e[4] for e in drain(other)] == ["id-0", "id-2"]
    other.close()


def test_a_live_writers_segments_are_not_adopted(tmp_path: Path) -> None:
    directory = str(tmp_path / "j")
    script = (
        "import sys; from meterstream._spool.journal import Journal\n"
        f"j = Journal({directory!r})\n"
        "j.append(('api_calls', 'cus_1', 1, 1.0, 'id-live', None))\n"
        "print('ready', flush=True); sys.stdin.read()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": SRC},
    ) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        other = Journal(directory)
        assert other.adopt_orphans() == 0
        proc.kill()
        proc.wait(30)
        assert other.adopt_orphans() == 1
        assert [e[4] for e in drain(other)] == ["id-live"]
        other.close()


def only_segment(directory: str) -> str:
    (path,) = segments.list_segments(directory)
    return path


def test_a_torn_tail_is_dropped(tmp_path: Path) -> None:
    directory = str(tmp_path / "j")
    journal = Journal(directory)
    for n in range(3):
        journal.append(event(n))
    end = journal._sources[0].seg.end
    abandon(journal)
    path = only_segment(directory)
    with open(path, "r+b") as f:  # a header written, its payload cut short
        f.seek(end)
        f.write(FRAME_HEADER.pack(60, 12345, 4) + b"\x04partial")
    other = Journal(directory)
    assert other.adopt_orphans() == 3
    assert [e[4] for e in drain(other)] == ["id-0", "id-1", "id-2"]
    assert other.torn_tails == 1 and other.corrupt_frames == 0
    other.close()
    assert segments.list_segments(directory) == []


def test_garbage_mid_segment_is_skipped_counted_and_kept_aside(tmp_path: Path) -> None:
    directory = str(tmp_path / "j")
    journal = Journal(directory)
    for n in range(20):
        journal.append(event(n))
    offsets = [
        frame.offset
        for frame in scan(
            journal._sources[0].seg.mm, HEADER_SIZE, journal._sources[0].seg.end, 0, ScanReport()
        )
    ]
    abandon(journal)
    path = only_segment(directory)
    with open(path, "r+b") as f:
        f.seek(offsets[5] + 20)
        f.write(os.urandom(offsets[8] - offsets[5] - 20))  # frames 5, 6, 7
    other = Journal(directory)
    other.adopt_orphans()
    got = [e[4] for e in drain(other)]
    assert got == [f"id-{n}" for n in range(20) if n not in (5, 6, 7)]
    assert other.corrupt_frames == 1
    other.close()
    assert segments.list_segments(directory) == []
    assert os.listdir(os.path.join(directory, "corrupt")) == [os.path.basename(path)]


def test_a_truncated_segment_gives_what_it_holds(tmp_path: Path) -> None:
    directory = str(tmp_path / "j")
    journal = Journal(directory)
    for n in range(50):
        journal.append(event(n))
    cut = (journal._sources[0].seg.end // 2) + 3
    abandon(journal)
    os.truncate(only_segment(directory), cut)
    other = Journal(directory)
    other.adopt_orphans()
    got = [e[4] for e in drain(other)]
    assert 20 <= len(got) < 50 and got == [f"id-{n}" for n in range(len(got))]
    other.close()


def test_a_file_that_is_not_a_segment_never_stops_the_start(tmp_path: Path) -> None:
    directory = tmp_path / "j"
    directory.mkdir()
    (directory / "00000000000000000001-1-deadbeef.seg").write_bytes(b"\x00" * 100)
    (directory / "00000000000000000002-1-deadbeef.seg").write_bytes(b"junk" * 100)
    journal = Journal(str(directory))
    assert journal.adopt_orphans() == 0
    assert segments.list_segments(str(directory)) == []
    assert os.listdir(directory / "corrupt") == ["00000000000000000002-1-deadbeef.seg"]
    journal.close()


def test_max_bytes_refuses_a_new_segment(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path / "j"), segment_bytes=4096, max_bytes=3 * 4096)
    with pytest.raises(JournalFull):
        for n in range(1000):
            journal.append(event(n))
    assert 50 < journal.written < 200
    drain(journal)
    journal.append(event(5000))  # room again once delivered
    journal.close()


def test_sync_full_shares_one_sync_between_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs: list[int] = []
    real = segments.Segment.sync
    slow = threading.Event()

    def counted(self: segments.Segment) -> None:
        syncs.append(1)
        slow.wait(0.002)  # a disk's sync takes time: threads pile up behind it
        real(self)

    monkeypatch.setattr(segments.Segment, "sync", counted)
    journal = Journal(str(tmp_path / "j"), sync="full")
    threads = [
        threading.Thread(target=lambda w=w: [journal.append(event(w * 100 + n)) for n in range(50)])
        for w in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert journal.written == 200
    assert 0 < len(syncs) < 150
    assert len(drain(journal)) == 200
    journal.close()


def test_sync_full_covers_every_waiting_thread_not_half_of_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8 threads that do nothing but record: a sync covers (nearly) all 8, not
    two halves taking turns (4 a sync, as without the leader's wait)."""
    syncs: list[int] = []
    real = segments.Segment.sync
    slow = threading.Event()

    def counted(self: segments.Segment) -> None:
        syncs.append(1)
        slow.wait(0.01)  # a disk's sync
        real(self)

    monkeypatch.setattr(segments.Segment, "sync", counted)
    journal = Journal(str(tmp_path / "j"), sync="full")
    start = threading.Barrier(8)

    def record(w: int) -> None:
        start.wait()
        for n in range(30):
            journal.append(event(w * 100 + n))

    threads = [threading.Thread(target=record, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert journal.written == 240
    assert journal.group_syncs == len(syncs)
    assert 240 / len(syncs) > 5.5, f"{240 / len(syncs):.1f} records per sync"
    journal.close()


def test_sync_interval_syncs_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = threading.Event()
    real = segments.Segment.sync

    def seen(self: segments.Segment) -> None:
        real(self)
        synced.set()

    monkeypatch.setattr(segments.Segment, "sync", seen)
    journal = Journal(str(tmp_path / "j"), sync_interval=0.01)
    journal.append(event(1))
    assert synced.wait(10)
    journal.close()


def test_a_forked_child_writes_its_own_segment(tmp_path: Path) -> None:
    directory = str(tmp_path / "j")
    journal = Journal(directory)
    journal.append(event(0))
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            journal.after_fork_in_child()
            journal.append(event(1))
            code = 0 if len(segments.list_segments(directory)) == 2 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [e[4] for e in drain(journal)] == ["id-0"]
    assert journal.adopt_orphans() == 1  # the child's, left when it exited
    assert [e[4] for e in drain(journal)] == ["id-1"]
    journal.close()


def test_a_full_disk_is_an_error_with_its_reason(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 2 MiB tmpfs here: {done.stderr.decode().strip()}")
    try:
        journal = Journal(str(mount / "j"), segment_bytes=1 << 20)
        with pytest.raises(JournalError) as raised:
            for n in range(100_000):
                journal.append(event(n))
        assert raised.value.reason == "disk_full"
        written = journal.written
        assert written > 1000
        assert len(drain(journal)) == written
        journal.close()
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_frames_number_in_order_across_segments(tmp_path: Path) -> None:
    directory = str(tmp_path / "j")
    journal = Journal(directory, segment_bytes=4096)
    for n in range(100):
        journal.append(event(n))
    firsts = []
    for source in journal._sources:
        firsts.append(struct.unpack_from("<Q", source.seg.mm, 16)[0])
    assert firsts == sorted(firsts) and firsts[0] == 1
    drain(journal)
    journal.close()


KILL_CHILD = """
import sys, threading
from meterstream._spool.journal import Journal
journal = Journal(sys.argv[1], segment_bytes=int(sys.argv[2]))
journal.adopt_orphans()
lock = threading.Lock()
def record(worker):
    n = 0
    while True:
        identifier = f"{sys.argv[3]}-{worker}-{n}"
        journal.append(("api_calls", "cus_1", 1, 1.0, identifier, None))
        with lock:
            sys.stdout.write(identifier + "\\n")
            sys.stdout.flush()
        n += 1
threads = [threading.Thread(target=record, args=(w,), daemon=True) for w in range(4)]
print("ready", flush=True)
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """4 threads write at full speed; SIGKILL at random moments (some during a
    roll-over: segments of 16 KiB roll every ~150 events); each returned
    append is read back exactly once, in each thread's order."""
    import random
    import time

    directory = str(tmp_path / "j")
    acknowledged: list[str] = []
    for round_ in range(12):
        with subprocess.Popen(
            [sys.executable, "-c", KILL_CHILD, directory, str(16 << 10), f"r{round_}"],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": SRC},
        ) as proc:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready"
            deadline = time.monotonic() + random.uniform(0.02, 0.3)
            lines: list[bytes] = []
            while time.monotonic() < deadline:
                lines.append(proc.stdout.readline())
            proc.kill()
            proc.wait(30)
            rest = proc.stdout.read()
        acknowledged.extend(line.decode().strip() for line in lines + rest.splitlines())
    acknowledged = [a for a in acknowledged if a]
    journal = Journal(directory)
    journal.adopt_orphans()
    got = [e[4] for e in drain(journal)]
    journal.close()
    assert len(got) == len(set(got)), "an event was read twice"
    missing = set(acknowledged) - set(got)
    assert not missing, f"{len(missing)} of {len(acknowledged)} lost"
    for prefix in {a.rsplit("-", 1)[0] for a in got}:
        mine = [int(a.rsplit("-", 1)[1]) for a in got if a.rsplit("-", 1)[0] == prefix]
        assert mine == sorted(mine)
    assert segments.list_segments(directory) == []
