"""The spool's schema version: 2 since uses are folded in it."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from meterstream._spool.spool import Spool
from meterstream.errors import ConfigurationError


def test_a_spool_written_before_folding_opens_and_takes_uses(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    spool = Spool(str(path))
    spool.append(("api_calls", "cus_old", 1, time.time(), "old-1", None))
    spool._db.execute("DROP TABLE uses")
    spool._db.execute("DROP TABLE meta")
    spool._db.execute("PRAGMA user_version=1")
    spool.close()
    again = Spool(str(path))
    try:
        assert again._db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert again.pending_count() == 1
        start = float(int(time.time()) // 60 * 60 - 60)
        again.append_use("tokens", "cus_old", 5, start, start + 60, None)
        assert again.aggregate_due(time.time(), force=True) == 1
    finally:
        again.close()


def test_a_build_that_reads_only_version_1_would_refuse_a_folding_spool(tmp_path: Path) -> None:
    # What an older meterstream does with a newer file: refuse it, naming
    # spool_path, rather than leave uses in it that it cannot fold.
    path = tmp_path / "new.db"
    Spool(str(path)).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=3")
    db.close()
    with pytest.raises(ConfigurationError, match="spool_path: .* newer meterstream"):
        Spool(str(path))
