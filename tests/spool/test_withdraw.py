"""Spool.withdraw: an event not sent yet is never sent (for cancel(), issue 28)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meterstream._spool.spool import Spool


def event(n: int) -> tuple[Any, ...]:
    return ("api_calls", "cus_1", 1, 1_700_000_000.0 + n, f"id-{n}", None)


def test_withdraw_before_sending_and_not_after(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "s.db"))
    try:
        for n in range(5):
            spool.append(event(n))
        spool.append_row(event(10))  # a row of the SQLite file (an aggregated event)
        taken = spool.journal.take(1)
        assert [e[4] for e in taken] == ["id-0"]
        assert not spool.withdraw("id-0")  # being sent
        assert spool.withdraw("id-2")
        assert not spool.withdraw("id-2")  # once
        assert spool.withdraw("id-10")
        assert not spool.withdraw("id-404")
        spool.accepted_events(taken)
        rest = spool.journal.take(100)
        assert [e[4] for e in rest] == ["id-1", "id-3", "id-4"]
        assert spool.claim(10).events == []
    finally:
        spool.close()


def test_a_withdrawal_outlives_the_process(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    spool = Spool(path)
    for n in range(3):
        spool.append(event(n))
    assert spool.withdraw("id-1")
    # What a SIGKILL leaves: the segment unlocked, nothing settled.
    for source in spool.journal._sources:
        source.seg.close()
    spool.journal._sources = []
    spool.journal._seg = None
    spool.close()
    again = Spool(path)
    try:
        assert [e[4] for e in again.journal.take(100)] == ["id-0", "id-2"]
    finally:
        again.close()


def test_a_withdrawn_event_never_reaches_stripe(
    tmp_path: Path, emulator: Any, make_client: Any
) -> None:
    client = make_client(emulator.url, spool_path=str(tmp_path / "s.db"), flush_interval=3600)
    emulator.set_faults(hang=True)
    try:
        for n in range(300):
            client.record("api_calls", customer="cus_1", identifier=f"w-{n}")
        assert client.spool.withdraw("w-299")
    finally:
        emulator.set_faults(hang=False)
    assert client.flush(30), client.stats()
    arrived = {e["identifier"] for e in emulator.state.events("api_calls")}
    assert "w-299" not in arrived and len(arrived) == 299
