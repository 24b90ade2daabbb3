"""Folds of two copies of one spool file never share an identifier."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from meterstream._spool.spool import Spool


def _pending_identifiers(spool: Spool) -> set[str]:
    rows = spool._db.execute("SELECT identifier FROM pending").fetchall()
    return {identifier for (identifier,) in rows}


def test_two_copies_of_a_spool_fold_under_different_identifiers(tmp_path: Path) -> None:
    # A restored backup, a cloned volume or an image baked with a spool: the
    # same uses, folded with different sums later, must never reach Stripe
    # under one identifier (it would drop the second as a repeat).
    original = tmp_path / "spool.db"
    spool = Spool(str(original))
    start = float(int(time.time()) // 60 * 60 - 120)
    spool.append_use("tokens", "cus_before", 1, start, start + 60, None)
    assert spool.aggregate_due(time.time(), force=True) == 1  # the file has folded before
    before = _pending_identifiers(spool)
    for n in range(5):
        spool.append_use("tokens", "cus_copy", n + 1, start, start + 60, None)
    spool.close()
    copy = tmp_path / "copy.db"
    shutil.copy(original, copy)
    first, second = Spool(str(original)), Spool(str(copy))
    try:
        second.append_use("tokens", "cus_copy", 100, start, start + 60, None)
        assert first.aggregate_due(time.time(), force=True) == 1
        assert second.aggregate_due(time.time(), force=True) == 1
        ids_first = _pending_identifiers(first) - before
        ids_second = _pending_identifiers(second) - before
        assert len(ids_first) == len(ids_second) == 1
        assert not ids_first & ids_second
    finally:
        first.close()
        second.close()
