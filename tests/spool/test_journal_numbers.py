"""Generated identifiers in the journal: kept as their numbers, completed by the segment's prefix.

A frame holds a generated identifier as the number the record path made;
the segment's header holds the writer's prefix, so whoever reads the frame
(the writer, a process that adopts it after a crash, a cancel looking for
it, ``meterstream spool``) gets the identifier the writer's ``record()``
returned. And the record path's writer: bound to the journal for its life,
a fork included.
"""

from __future__ import annotations

import marshal
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from meterstream._record.events import identifier_prefix
from meterstream._spool import segment as segments
from meterstream._spool.frames import FRAME_HEADER, seed
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


V1_HEADER = struct.Struct("<8sIxxxxQQQQQQ")  # magic, version, first, pid, cursor, sealed, created


def version_1_segment(path: str, events: list[tuple[Any, ...]]) -> None:
    """A segment as a build of version 1 wrote it: its magic and header, each
    frame's checksum seeded with its length and sequence number."""
    body = bytearray(V1_HEADER.pack(segments.MAGIC_V1, 1, 1, 99999, 0, 64, 0, time.time_ns()))
    for seq, recorded in enumerate(events, start=1):
        payload = marshal.dumps(recorded, 4)
        check = zlib.crc32(payload, seed(len(payload), seq, version=1))
        body += FRAME_HEADER.pack(len(payload), check, seq) + payload
        body += bytes(-len(payload) % 8)
    body += bytes(1 << 16)
    Path(path).write_bytes(bytes(body))


def test_a_version_1_segment_is_read_as_it_is(tmp_path: Path) -> None:
    """A segment of the header before prefixes: its frames check as they were
    seeded, every identifier in it is text, and a number found in one anyway
    is not completed with a guess (counted, the segment kept aside)."""
    directory = tmp_path / "j"
    directory.mkdir()
    path = str(directory / "00000000000000000001-99999-abcd.seg")
    version_1_segment(
        path,
        [
            ("api_calls", "cus_1", 1, 1.0, "id-a", None),
            ("api_calls", "cus_1", 1, 2.0, 5, None),
            ("api_calls", "cus_1", 2, 3.0, "id-b", None),
        ],
    )
    assert segments.version_of(Path(path).read_bytes()) == 1
    assert segments.prefix_of(Path(path).read_bytes()) is None
    assert [e[4] for e in inspect(str(directory))] == ["id-a", "id-b"]
    journal = Journal(str(directory))
    assert journal.adopt_orphans() == 3
    assert [e[4] for e in drain(journal)] == ["id-a", "id-b"]
    assert journal.corrupt_frames == 1
    journal.close()
    assert [Path(p).name for p in journal.moved_aside] == [Path(path).name]


def test_a_segment_of_a_version_not_read_here_is_set_aside_not_deleted(tmp_path: Path) -> None:
    """A newer build's segment (or garbage with a segment's name): kept for a
    human, never taken for an empty one."""
    directory = str(tmp_path / "j")
    journal = Journal(directory)
    journal.append(("api_calls", "cus_1", 1, 1.0, "id-a", None))
    (path,) = segments.list_segments(directory)
    for source in journal._sources:  # what a SIGKILL leaves
        source.seg.close()
    journal._sources = []
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(struct.pack("<I", 3))
    other = Journal(directory)
    assert other.adopt_orphans() == 0
    assert segments.list_segments(directory) == []
    assert os.listdir(os.path.join(directory, "corrupt")) == [os.path.basename(path)]
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


FORKED = """
import os, sys
import meterstream
from meterstream._spool.journal import inspect
directory = sys.argv[1]
spool = os.path.join(directory, "s.db")
client = meterstream.MeterClient(spool_path=spool, exporter="none", flush_interval=3600)
other = meterstream.MeterClient(
    spool_path=os.path.join(directory, "o.db"), exporter="none", flush_interval=3600
)
client.record("api_calls", 1, customer="cus_1")
other.record("api_calls", 1, customer="cus_1")

def check():
    returned = client.record("api_calls", 1, customer="cus_1")
    waiting = [e[4] for e in inspect(spool + ".journal")]
    print(os.getpid(), returned in waiting, client.cancel(returned, "api_calls"), flush=True)

pid = os.fork()
if pid == 0:  # the child forks again: the hooks of a fork of a fork
    grandchild = os.fork()
    if grandchild == 0:
        check()
        os._exit(0)
    os.waitpid(grandchild, 0)
    check()
    os._exit(0)
os.waitpid(pid, 0)
check()
client.shutdown(1)
other.shutdown(1)
"""


def test_a_forked_child_writes_what_its_record_returned_and_the_hooks_raise_nothing(
    tmp_path: Path,
) -> None:
    """In a child (and a grandchild) of a process with two spools: the
    identifier ``record()`` returned is the one waiting in the journal (the
    segment's prefix is the child's), ``cancel()`` withdraws it, and the fork
    hooks give each journal lock back once (a second give would let two
    writers in at once, and ``Mutex.release`` says so)."""
    proc = subprocess.run(
        [sys.executable, "-c", FORKED, str(tmp_path)],
        env={**os.environ, "PYTHONPATH": SRC},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "release unlocked lock" not in proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines()]
    assert len(lines) == 3  # the process, its child, its grandchild
    assert all(line[1:] == ["True", "withdrawn"] for line in lines), proc.stdout
