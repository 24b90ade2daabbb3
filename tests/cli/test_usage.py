"""``meterstream usage --spool PATH``: totals from the spool, accepted beside pending and dead."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from meterstream._spool.spool import Spool
from meterstream._spool.usage import read_usage
from meterstream.cli import main

DAY = 1_750_032_000  # 2025-06-16T00:00:00Z
HOUR = 3600


@pytest.fixture
def spool_file(tmp_path: Path) -> str:
    """cus_a: 3 tokens events accepted (10, 20, 0.5), 1 pending (Decimal 1.25), 1 dead (7);
    cus_b: 2 calls accepted in the next hour, 1 pending the next day."""
    path = str(tmp_path / "spool.db")
    spool = Spool(path, history=10 * 365 * 86400.0)
    events = [
        ("tokens", "cus_a", 10, DAY + 60, "t1", None),
        ("tokens", "cus_a", 20, DAY + 120, "t2", None),
        ("tokens", "cus_a", 0.5, DAY + 180, "t3", None),
        ("calls", "cus_b", 1, DAY + HOUR + 5, "c1", None),
        ("calls", "cus_b", 1, DAY + HOUR + 6, "c2", None),
        ("tokens", "cus_a", 7, DAY + 240, "t4", None),
    ]
    # What a process leaves: recorded into its journal, then settled as Stripe answered.
    for e in events:
        spool.append(e)
    taken = spool.journal.take(6)
    spool.accepted_events(taken[:5])
    spool.bury_events(taken[5:], "rejected", "parameter_invalid", "bad")
    spool.append(("tokens", "cus_a", Decimal("1.25"), DAY + 300, "t5", None))
    spool.append(("calls", "cus_b", 1, DAY + 86400 + 1, "c3", None))
    spool.append(("calls", "cus_b", 1, DAY + 86400 + 2, "c4", None))
    assert spool.withdraw("c4") == "withdrawn"  # cancelled before it was sent: not usage
    spool.close()
    return path


def test_by_customer_puts_accepted_pending_and_dead_side_by_side(spool_file: str) -> None:
    rows = {(r.customer, r.event_name): r for r in read_usage(spool_file)}
    a = rows[("cus_a", "tokens")]
    assert a.events == {"accepted": 3, "pending": 1, "dead": 1}
    assert a.values == {"accepted": 30.5, "pending": Decimal("1.25"), "dead": 7}
    b = rows[("cus_b", "calls")]
    assert b.events == {"accepted": 2, "pending": 1, "dead": 0}


def test_by_hour_and_day_group_by_the_events_timestamp_in_utc(spool_file: str) -> None:
    hours = [
        (r.start, r.event_name, r.events["accepted"]) for r in read_usage(spool_file, by="hour")
    ]
    assert hours == [(DAY, "tokens", 3), (DAY + HOUR, "calls", 2), (DAY + 86400, "calls", 0)]
    days = [(r.start, r.event_name) for r in read_usage(spool_file, by="day")]
    assert days == [(DAY, "calls"), (DAY, "tokens"), (DAY + 86400, "calls")]


def test_filters_by_customer_and_time(spool_file: str) -> None:
    only_b = read_usage(spool_file, by="event", customer=["cus_b"])
    assert [(r.event_name, r.events["accepted"], r.events["pending"]) for r in only_b] == [
        ("calls", 2, 1)
    ]
    window = read_usage(spool_file, by="event", since=DAY + 100, until=DAY + HOUR)
    assert [(r.event_name, r.events) for r in window] == [
        ("tokens", {"accepted": 2, "pending": 1, "dead": 1})
    ]


def test_the_spool_is_read_not_written(spool_file: str, tmp_path: Path) -> None:
    files = [Path(spool_file), *sorted(Path(spool_file + ".journal").glob("*"))]
    assert len(files) > 1  # the journal's segment, with the pending events
    before = [f.read_bytes() if f.is_file() else None for f in files]
    read_usage(spool_file)
    assert [f.read_bytes() if f.is_file() else None for f in files] == before


def test_the_table_a_person_reads(spool_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--spool", spool_file]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "customer", "event", "accepted", "value", "pending", "value", "dead", "value"
    ]  # fmt: skip
    assert out[2].split() == ["cus_a", "tokens", "3", "30.5", "1", "1.25", "1", "7"]
    assert out[3].split() == ["cus_b", "calls", "2", "2", "1", "1", "0", "0"]
    assert out[-1].split() == ["total", "5", "2", "1"]


def test_json_lines_for_scripts(spool_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--spool", spool_file, "--by", "day", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[1] == {
        "day": "2025-06-16",
        "start_time": DAY,
        "event_name": "tokens",
        "accepted_events": 3,
        "accepted_value": "30.5",
        "pending_events": 1,
        "pending_value": "1.25",
        "dead_events": 1,
        "dead_value": "7",
    }


def test_times_in_iso_are_accepted(spool_file: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["usage", "--spool", spool_file, "--by", "event", "--json"]
    assert main([*args, "--since", "2025-06-16T01:00:00Z", "--until", "2025-06-17"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["accepted_events"] == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--spool", "nowhere.db"], "--spool nowhere.db: there is no spool at"),
        (["--spool", "SPOOL", "--by", "week"], "invalid choice: 'week'"),
        (["--spool", "SPOOL", "--since", "2", "--until", "1"], "--since must be before --until"),
        (["--spool", "SPOOL", "--since", "yesterday"], "is not a time: give ISO 8601"),
    ],
)
def test_mistakes_exit_2_with_a_one_line_hint(
    spool_file: str, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["usage", *(spool_file if a == "SPOOL" else a for a in extra)]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_a_file_that_is_not_a_spool_is_said_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(SystemExit):
        main(["usage", "--spool", str(other)])
    assert "is not a spool" in capsys.readouterr().err


# -- the spool's commands on the same file --------------------------------------------------------


def test_spool_export_accepted_writes_the_accepted_history(
    spool_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["spool", "export", "--accepted", "--spool", spool_file]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["identifier"] for row in rows] == ["t1", "t2", "t3", "c1", "c2"]
    assert rows[0] == {
        "identifier": "t1",
        "event_name": "tokens",
        "customer": "cus_a",
        "value": 10,
        "timestamp": DAY + 60,
        "accepted_at": rows[0]["accepted_at"],
    }


def test_spool_status_reads_the_spool_path_from_the_environment(
    spool_file: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("METERSTREAM_SPOOL_PATH", spool_file)
    assert main(["spool", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accepted"] == 5
