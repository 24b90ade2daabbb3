"""``meterstream spool status|replay|export|purge``, as a person runs them."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from helpers import cli
from meterstream._spool.spool import DeadLetter, Spool


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return cli.run("spool", *args)


@pytest.fixture
def spool_file(tmp_path: Path) -> str:
    """A spool with 12 pending events and 3 dead letters of two reasons."""
    path = str(tmp_path / "spool.db")
    spool = Spool(path)
    an_hour_ago = time.time() - 3600
    for n in range(15):
        name = "ai_search" if n % 3 else "llm_tokens"
        spool.append_row((name, f"cus_{n % 2}", n, an_hour_ago + n, f"id-{n}", None))
    batch = spool.claim(3)
    spool.bury(
        [
            DeadLetter(batch.seqs[0], "rejected", "parameter_invalid", "bad value"),
            DeadLetter(batch.seqs[1], "no_meter", "no_meter", "no meter for ai_search"),
            DeadLetter(batch.seqs[2], "no_meter", "no_meter", "no meter for ai_search"),
        ]
    )
    spool.close()
    return path


def test_status_shows_counts_by_event_and_reason_oldest_age_and_size(spool_file: str) -> None:
    result = run("status", "--spool", spool_file)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "pending        12 (0 being sent), oldest 59.9m" in out or "oldest 1.0h" in out
    assert "dead letters   3" in out
    assert "size on disk" in out and "KiB" in out
    lines = out.splitlines()
    assert any(line.split() == ["ai_search", "8"] for line in lines), out
    assert any(line.split() == ["llm_tokens", "4"] for line in lines), out
    assert any(line.split() == ["ai_search", "no_meter", "2"] for line in lines), out
    assert any(line.split() == ["llm_tokens", "rejected", "1"] for line in lines), out


def test_status_as_json(spool_file: str) -> None:
    result = run("status", "--spool", spool_file, "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["pending"] == 12 and status["dead"] == 3
    assert status["pending_by_event"] == {"ai_search": 8, "llm_tokens": 4}
    assert {"event_name": "ai_search", "reason": "no_meter", "count": 2} in status["dead_by_reason"]
    assert status["oldest_pending_age_seconds"] > 3500


def test_replay_by_reason_puts_dead_letters_back_with_their_identifiers(spool_file: str) -> None:
    result = run("replay", "--spool", spool_file, "--reason", "no_meter")
    assert result.returncode == 0, result.stderr
    assert "replayed 2 events" in result.stdout
    spool = Spool(spool_file)
    pending = {event["identifier"] for event in spool.admin.export("pending")}
    dead = [event["identifier"] for event in spool.admin.export("dead")]
    spool.close()
    assert {"id-1", "id-2"} <= pending
    assert dead == ["id-0"]


def test_export_writes_json_lines(spool_file: str) -> None:
    result = run("export", "--spool", spool_file, "--dead")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["identifier"], r["reason"], r["code"]) for r in rows] == [
        ("id-0", "rejected", "parameter_invalid"),
        ("id-1", "no_meter", "no_meter"),
        ("id-2", "no_meter", "no_meter"),
    ]
    pending = run("export", "--spool", spool_file)
    assert len(pending.stdout.splitlines()) == 12
    assert json.loads(pending.stdout.splitlines()[0])["identifier"] == "id-3"


def test_purge_wants_a_confirmation(spool_file: str) -> None:
    refused = run("purge", "--spool", spool_file, "--dead")
    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    done = run("purge", "--spool", spool_file, "--dead", "--reason", "rejected", "--yes")
    assert done.returncode == 0, done.stderr
    assert "purged 1 event from dead letters" in done.stdout
    assert json.loads(run("status", "--spool", spool_file, "--json").stdout)["dead"] == 2


@pytest.mark.parametrize(
    ("make", "hint"),
    [
        (lambda p: None, "there is no spool"),
        (lambda p: Path(p).write_text("not a database"), "not a SQLite database"),
    ],
)
def test_a_path_that_is_no_spool_exits_2_with_a_hint(tmp_path: Path, make, hint: str) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "x.db")
    make(path)
    result = run("status", "--spool", path)
    assert result.returncode == 2
    assert hint in result.stderr
    assert "--spool" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.db-wal").exists()


def test_a_corrupt_spool_is_reported_not_moved_by_status(spool_file: str) -> None:
    data = bytearray(Path(spool_file).read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    Path(spool_file).write_bytes(bytes(data))
    result = run("status", "--spool", spool_file)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert Path(spool_file).read_bytes() == bytes(data)
