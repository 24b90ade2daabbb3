"""Generated identifiers in the journal: kept as their numbers, completed by the segment's prefix.

A frame holds a generated identifier as the number the record path made;
the segment's header holds the writer's prefix, so whoever reads the frame
(the writer, a process that adopts it after a crash, a cancel looking for
it, ``meterstream spool``) gets the identifier the writer's ``record()``
returned. And the record path's writer: bound to the journal for its life,
a fork included.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from meterstream._record.events import identifier_prefix
from meterstream._spool import segment as segments
from meterstream._spool.journal import Journal, inspect

SRC = str(Path(__file__).resolve().parents[2] / "src")


def numbered(n: int) -> tuple[Any, ...]:
    return ("api_calls", "cus_1", 1, 1_700_000_000.0 + n, n, None)


def drain(journal: Journal) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    while True:
        batch = journal.take(1000)
        if not batch:
            return out
        journal.settle(batch)
        out.extend(batch)


def checked(journal: Journal) -> Any:
    """The writer's slow path, as the spool's buffer gives it: the journal's append."""

    def put(event: tuple[Any, ...]) -> bool:
        journal.append(event)
        return True

    return put


def segment_bytes(directory: str) -> bytes:
    (path,) = segments.list_segments(directory)
    return Path(path).read_bytes()


def test_a_generated_identifier_is_written_as_its_number(tmp_path: Path) -> None:
    directory = str(tmp_path / "j")
    journal = Journal(directory)
    write = journal.writer(checked(journal), threading.Event(), 100)
    assert write(numbered(12345678)) is True
    journal.append(numbered(7))  # the checked path does the same
    raw = segment_bytes(directory)
    prefix = identifier_prefix()
    assert prefix.encode() not in raw  # the number alone, in every frame
    assert struct.pack("<i", 12345678) in raw
    assert segments.prefix_of(raw) == prefix
    assert [e[4] for e in drain(journal)] == [prefix + "12345678", prefix + "7"]
    journal.close()


WRITER = """
import sys
from meterstream._record.events import identifier_prefix
from meterstream._spool.journal import Journal
j = Journal(sys.argv[1])
for n in (1, 2, 3, 250, 10**12):
    j.append(('api_calls', 'cus_1', 1, 1.0 + n, n, None))
j.append(('api_calls', 'cus_1', 1, 9.0, 'text-id', None))
print(identifier_prefix(), flush=True)
sys.stdin.read()
"""


def test_another_processs_numbers_are_completed_by_its_prefix(tmp_path: Path) -> None:
    directory = str(tmp_path / "j")
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, directory],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": SRC},
    ) as proc:
        assert proc.stdout is not None
        theirs = proc.stdout.readline().decode().strip()
        mine = identifier_prefix()
        assert theirs != mine
        journal = Journal(directory)
        # Found in the live writer's segment by the identifier its record() returned...
        assert journal.held_elsewhere(theirs + "3")
        assert journal.held_elsewhere(theirs + str(10**12))
        assert journal.held_elsewhere("text-id")
        # ...and not by the same number under another prefix, or written otherwise.
        assert not journal.held_elsewhere(mine + "3")
        assert not journal.held_elsewhere(theirs + "03")
        assert not journal.held_elsewhere(theirs + "4")
        proc.kill()
        proc.wait(30)
    waiting = [e[4] for e in inspect(directory)]
    expected = [theirs + str(n) for n in (1, 2, 3, 250, 10**12)] + ["text-id"]
    assert waiting == expected
    assert journal.adopt_orphans() == 6  # its events
    gone: set[str] = set()
    assert journal.withdraw(theirs + "2", gone.add) == "withdrawn"
    assert journal.withdraw(mine + "3", gone.add) is None
    assert [e[4] for e in drain(journal)] == [i for i in expected if i != theirs + "2"]
    assert gone == {theirs + "2"}
    journal.close()


def test_a_version_1_segment_is_read_as_it_is(tmp_path: Path) -> None:
    """The header before prefixes: every identifier in it is text, and a number
    found in one anyway is not completed with a guess."""
    directory = str(tmp_path / "j")
    journal = Journal(directory)
    journal.append(("api_calls", "cus_1", 1, 1.0, "id-a", None))
    journal.append(numbered(5))
    journal.append(("api_calls", "cus_1", 2, 2.0, "id-b", None))
    (path,) = segments.list_segments(directory)
    for source in journal._sources:  # what a SIGKILL leaves
        source.seg.close()
    journal._sources = []
    with open(path, "r+b") as f:  # version 1: sealed as 8 bytes, then a creation time
        f.seek(8)
        f.write(struct.pack("<I", 1))
        f.seek(48)
        f.write(struct.pack("<QQ", 0, time.time_ns()))
    assert segments.prefix_of(Path(path).read_bytes()) is None
    other = Journal(directory)
    assert other.adopt_orphans() == 3
    assert [e[4] for e in drain(other)] == ["id-a", "id-b"]
    assert other.corrupt_frames == 1
    other.close()


def test_the_writer_outlives_a_fork_that_passed_its_lock_over(tmp_path: Path) -> None:
    """A fork while another thread holds the journal's lock (a fork's patience
    run out, or a journal no spool tracks): the child's journal frees the lock
    its writer is bound to, and the writer writes there."""
    directory = str(tmp_path / "j")
    journal = Journal(directory)
    write = journal.writer(checked(journal), threading.Event(), 100)
    assert write(numbered(1))
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with journal._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(30)
    pid = os.fork()
    if pid == 0:  # the child: the holder thread is not here, its lock is
        code = 1
        try:
            signal.alarm(20)  # a writer stuck on the parent's lock dies of SIGALRM
            journal.after_fork_in_child()
            ok = write(numbered(2)) and write(numbered(3))
            code = 0 if ok and journal.written == 2 else 2
        finally:
            os._exit(code)
    release.set()
    holder.join(30)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [e[4] for e in drain(journal)] == [identifier_prefix() + "1"]
    journal.close()
