"""Claim, ack and release take a whole batch in one statement a table, in
pieces under SQLite's parameter limit: batches of any size behave alike."""

from __future__ import annotations

import time

import pytest

from meterstream._spool.queue import IN_LIMIT
from meterstream._spool.spool import Spool

COUNT = 2 * IN_LIMIT + 7  # three pieces


@pytest.fixture
def spool(spool_path: str) -> Spool:
    spool = Spool(spool_path)
    now = time.time()
    for n in range(COUNT):
        spool.append_row(("api_calls", "cus_1", n, now - n, f"id-{n}", None))
    return spool


def test_a_claim_larger_than_one_statement_takes_each_event_once(spool: Spool) -> None:
    try:
        batch = spool.claim(COUNT + 10)
        assert len(batch) == COUNT
        assert batch.seqs == sorted(batch.seqs)
        assert [event[4] for event in batch.events] == [f"id-{n}" for n in range(COUNT)]
        assert len(spool.claim(10)) == 0, "claimed events were handed out again"
    finally:
        spool.close()


def test_ack_of_a_large_batch_keeps_each_accepted_event_once(spool: Spool) -> None:
    try:
        batch = spool.claim(COUNT)
        assert spool.ack(batch.seqs + batch.seqs[:3]) == COUNT
        assert spool.pending_count() == 0
        assert spool._db.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
        accepted = spool.accepted_between(0, time.time() + 1)
        assert sorted(value for _, _, value, _, _ in accepted) == list(range(COUNT))
    finally:
        spool.close()


def test_release_of_a_large_batch_returns_every_event_with_one_more_attempt(
    spool: Spool,
) -> None:
    try:
        batch = spool.claim(COUNT)
        spool.release(batch.seqs)
        again = spool.claim(COUNT)
        assert again.seqs == batch.seqs
        assert again.attempts == [1] * COUNT
    finally:
        spool.close()
