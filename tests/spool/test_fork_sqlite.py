"""A fork while another thread is inside SQLite must not hang the child.

SQLite's mutexes (its allocator's, its file-locking table's) are held by a
thread while it is inside a call; the child of a fork taken meanwhile starts
with them held by a thread it does not have, and waits forever on its first
SQLite call. The spool holds its connections' locks across a fork so no
thread of the spool is inside SQLite at that moment.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from meterstream._spool.segment import DirectoryLock
from meterstream._spool.spool import Spool

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.slow,
]

FORKS = 30
#: A child opens a spool, records and closes in a few milliseconds; one that
#: has not exited by then waits on a mutex no thread of it will release.
CHILD_DEADLINE = 10.0


def event(n: int, prefix: str = "e") -> tuple[Any, ...]:
    return ("api_calls", "cus_1", 1, 1_700_000_000.0 + n, f"{prefix}-{n}", None)


def busy(spool: Spool, stop: threading.Event, counts: list[int]) -> None:
    """Record and acknowledge as fast as one thread can: in SQLite most of the time."""
    n = 0
    while not stop.is_set():
        spool.append(event(n))
        spool.append_row(event(n, "row"))
        spool.accepted_events(spool.journal.take(100))
        batch = spool.claim(100)
        spool.ack(batch.seqs)
        n += 1
    counts.append(n)


def child(path: str) -> None:
    code = 1
    try:
        spool = Spool(path)
        spool.append(event(os.getpid(), "child"))
        spool.close()
        code = 0
    finally:
        os._exit(code)


def exited_within(pid: int, deadline: float) -> bool:
    """Whether *pid* exited (status 0) before *deadline*; killed and reaped if not."""
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return True
        time.sleep(0.005)  # a process, not a thread of ours: nothing to wait on
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return False


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_children_forked_while_a_thread_records_and_acknowledges_open_the_spool(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "s.db")
    spool = Spool(path)
    stop = threading.Event()
    counts: list[int] = []
    worker = threading.Thread(target=busy, args=(spool, stop, counts), daemon=True)
    worker.start()
    hung = 0
    try:
        for _ in range(FORKS):
            pid = os.fork()
            if pid == 0:
                child(path)
            if not exited_within(pid, time.monotonic() + CHILD_DEADLINE):
                hung += 1
    finally:
        stop.set()
        worker.join(30)
        spool.close()
    assert counts and counts[0] > 0  # the thread was busy throughout
    assert hung == 0, f"{hung} of {FORKS} children hung in SQLite"


def test_a_child_does_not_keep_the_journal_directory_lock_it_inherited(tmp_path: Path) -> None:
    directory = str(tmp_path)
    lock = DirectoryLock(directory)
    read_end, write_end = os.pipe()
    ready_read, ready_write = os.pipe()
    lock.__enter__()
    pid = os.fork()
    if pid == 0:
        os.close(write_end)
        os.write(ready_write, b"r")  # the fork's hooks have run
        os.read(read_end, 1)  # lives until the parent is done
        os._exit(0)
    try:
        assert os.read(ready_read, 1) == b"r"
        lock.__exit__()
        fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free, the child still alive
        finally:
            os.close(fd)
    finally:
        for end in (write_end, read_end, ready_read, ready_write):
            os.close(end)
        assert exited_within(pid, time.monotonic() + CHILD_DEADLINE)
