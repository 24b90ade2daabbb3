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
        assert spool.withdraw("id-0") == "in_flight"  # being sent
        assert spool.withdraw("id-2") == "withdrawn"
        assert spool.withdraw("id-2") is None  # once
        assert spool.withdraw("id-10") == "withdrawn"
        assert spool.withdraw("id-404") is None
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
    assert spool.withdraw("id-1") == "withdrawn"
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
        assert client.spool.withdraw("w-299") == "withdrawn"
    finally:
        emulator.set_faults(hang=False)
    assert client.flush(30), client.stats()
    arrived = {e["identifier"] for e in emulator.state.events("api_calls")}
    assert "w-299" not in arrived and len(arrived) == 299


def test_an_event_of_a_process_that_died_since_is_withdrawn(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    live = Spool(path)
    dead = Spool(path)
    try:
        for n in range(3):
            dead.append(event(n))
        # What a SIGKILL leaves: the segment unlocked, nothing settled.
        for source in dead.journal._sources:
            source.seg.close()
        dead.journal._sources = []
        dead.journal._seg = None
        dead.close()
        assert live.withdraw("id-1") == "withdrawn"  # adopted for the search
        assert [e[4] for e in live.journal.take(100)] == ["id-0", "id-2"]
    finally:
        live.close()


def test_an_event_given_back_after_a_failed_attempt_is_withdrawn(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "s.db"))
    try:
        for n in range(3):
            spool.append(event(n))
        taken = spool.journal.take(2)
        spool.journal.give_back(taken, delay=60.0)
        assert spool.withdraw("id-1") == "withdrawn"
        assert spool.withdraw("id-1") is None
        assert [e[4] for e in spool.journal.take(100, now=float("inf"))] == ["id-0", "id-2"]
        assert spool.pending_count() == 2
    finally:
        spool.close()
