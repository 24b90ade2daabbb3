"""The spool's schema version: 2 since uses are aggregated in it, 3 since the journal."""

from __future__ import annotations

import shutil
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from meterstream._spool.schema import SCHEMA_VERSION
from meterstream._spool.spool import Spool
from meterstream.errors import ConfigurationError


def test_a_spool_written_before_folding_opens_and_takes_uses(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    spool = Spool(str(path))
    spool.append_row(("api_calls", "cus_old", 1, time.time(), "old-1", None))
    spool._db.execute("DROP TABLE uses")
    spool._db.execute("DROP TABLE meta")
    spool._db.execute("PRAGMA user_version=1")
    spool.close()
    again = Spool(str(path))
    try:
        assert again._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
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
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ConfigurationError, match="spool_path: .* newer meterstream"):
        Spool(str(path))


def test_a_spool_of_the_previous_release_is_drained_on_open(
    tmp_path: Path, emulator: Any, make_client: Any
) -> None:
    """Schema 2 (before the journal): its pending rows are delivered, in order,
    with their identifiers and timestamps, by a client of this release."""
    path = str(tmp_path / "v2.db")
    spool = Spool(path)
    first = time.time() - 120
    for n in range(30):
        spool.append_row(("api_calls", "cus_v2", n, first + n, f"v2-{n}", None))
    spool._db.execute("DROP TABLE withdrawn")
    spool._db.execute("PRAGMA user_version=2")
    spool.close()
    shutil.rmtree(path + ".journal")
    client = make_client(emulator.url, spool_path=path, max_concurrent_requests=1)
    assert client.flush(30), client.stats()
    events = emulator.state.events("api_calls")
    assert [e["identifier"] for e in events] == [f"v2-{n}" for n in range(30)]
    assert [e["payload"]["value"] for e in events] == [str(n) for n in range(30)]
    stamps = [datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) for e in events]
    assert [int(t.timestamp()) for t in stamps] == [int(first + n) for n in range(30)]
