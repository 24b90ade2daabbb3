"""Checkpoints run on their own thread: no record() waits for one, and the log stays bounded."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from helpers.poll import wait_for
from meterstream._spool.checkpoint import SAFETY_NET_FRAMES
from meterstream._spool.spool import Spool


def _event(i: int) -> tuple[str, str, int, float, str, None]:
    return ("api_calls", "cus_ckpt", 1, time.time(), f"ckpt-{i}", None)


def _wal_frames(path: str) -> int:
    """Frames in the write-ahead log not yet copied back (another connection's view)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        # PASSIVE on an idle spool copies what it can and says how much was there.
        busy, log, done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(log) - int(done)
    finally:
        db.close()


def test_the_spools_connection_checkpoints_inside_a_commit_only_as_a_safety_net(
    tmp_path: Path,
) -> None:
    spool = Spool(str(tmp_path / "spool.db"))
    try:
        frames = spool._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert frames == SAFETY_NET_FRAMES >= 10 * 1000
    finally:
        spool.close()


def test_the_checkpoint_thread_keeps_the_log_bounded_while_events_pile_up(tmp_path: Path) -> None:
    path = str(tmp_path / "spool.db")
    spool = Spool(path)
    try:
        checkpointer = spool._checkpointer
        for i in range(12_000):  # one commit (at least one 4 KiB frame) each
            spool.append_row(_event(i))
            if i % 1_000 == 999:  # let the thread keep up, however loaded the machine
                before = checkpointer.runs
                checkpointer.wake()
                assert wait_for(lambda n=before: checkpointer.runs > n, timeout=30)
        names = [t.name for t in threading.enumerate()]
        assert "meterstream-spool-checkpoint" in names
        # Without the thread the log would hold 12,000 frames (about 48 MiB:
        # the safety net is further out); with it, it is copied back every
        # few hundred commits and starts over.
        wal = os.path.getsize(path + "-wal")
        assert wal < 16 * 1024 * 1024, wal
        assert spool.pending_count() == 12_000
    finally:
        spool.close()
    assert "meterstream-spool-checkpoint" not in [t.name for t in threading.enumerate()]


def test_after_close_and_reopen_nothing_is_lost(tmp_path: Path) -> None:
    path = str(tmp_path / "spool.db")
    spool = Spool(path)
    for i in range(3_000):
        spool.append_row(_event(i))
    spool.close()
    again = Spool(path)
    try:
        assert again.pending_count() == 3_000
        assert _wal_frames(path) >= 0
    finally:
        again.close()


def test_a_reader_holding_a_snapshot_never_stalls_record_for_long(tmp_path: Path) -> None:
    # A backup tool, a replicator or a sqlite3 shell may keep a read
    # transaction open on the spool: the log cannot restart under it, and a
    # checkpoint that waited for it would hold every writer up as long.
    path = str(tmp_path / "spool.db")
    spool = Spool(path)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM pending").fetchone()
        slowest = 0.0
        for i in range(8_000):  # well past the frames that ask for a RESTART checkpoint
            began = time.perf_counter()
            spool.append_row(_event(i))
            slowest = max(slowest, time.perf_counter() - began)
        assert slowest < 2.0, slowest
        assert spool.pending_count() == 8_000
    finally:
        reader.execute("ROLLBACK")
        reader.close()
        spool.close()


def test_a_spool_dropped_without_close_ends_its_checkpoint_thread(tmp_path: Path) -> None:
    import gc

    def live() -> int:
        return sum(t.name == "meterstream-spool-checkpoint" for t in threading.enumerate())

    before = live()
    for n in range(5):
        spool = Spool(str(tmp_path / f"dropped-{n}.db"))
        for i in range(300):  # wakes the checkpoint thread
            spool.append_row(_event(i))
        del spool
    gc.collect()
    assert wait_for(lambda: live() <= before, timeout=30), live()
