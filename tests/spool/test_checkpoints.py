"""Checkpoints run on their own thread: no record() waits for one, and the log stays bounded."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from _poll import wait_for
from meterstream._spool import Spool


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


def test_the_spools_connection_never_checkpoints_inside_a_commit(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool.db"))
    try:
        assert spool._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    finally:
        spool.close()


def test_the_checkpoint_thread_keeps_the_log_bounded_while_events_pile_up(tmp_path: Path) -> None:
    path = str(tmp_path / "spool.db")
    spool = Spool(path)
    try:
        for i in range(12_000):  # one commit (at least one 4 KiB frame) each
            spool.append(_event(i))
        checkpointer = spool._checkpointer
        wait_for(lambda: checkpointer.runs > 0, timeout=30)
        names = [t.name for t in threading.enumerate()]
        assert "meterstream-spool-checkpoint" in names
        # Without checkpoints the log would hold 12,000 frames (about 48 MiB);
        # with them it is copied back every few hundred commits and restarts.
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
        spool.append(_event(i))
    spool.close()
    again = Spool(path)
    try:
        assert again.pending_count() == 3_000
        assert _wal_frames(path) >= 0
    finally:
        again.close()
