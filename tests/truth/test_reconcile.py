"""``meterstream reconcile``: the spool's accepted events beside the emulator's summaries."""

from __future__ import annotations

import json
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import cli
from meterstream._record.events import EventBatch
from meterstream._spool.spool import Spool
from meterstream.emulator import Emulator

KEY = "sk_test_reconcile"
HOUR = 3600


@pytest.fixture
def spool_path(tmp_path: Path) -> str:
    return str(tmp_path / "spool.db")


def create_meter(emulator: Emulator, event_name: str, formula: str = "sum") -> None:
    response = httpx.post(
        emulator.url + "/v1/billing/meters",
        headers={"Authorization": f"Bearer {KEY}"},
        data={
            "display_name": event_name,
            "event_name": event_name,
            "default_aggregation[formula]": formula,
        },
    )
    assert response.status_code == 200, response.text


def deliver(spool: Spool, emulator: Emulator) -> None:
    """What the delivery engine does with a spool: claim, send, acknowledge."""
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        token = http.post(
            "/v2/billing/meter_event_session", headers={"Authorization": f"Bearer {KEY}"}
        ).json()["authentication_token"]
        while True:
            batch = spool.claim(100)
            if not len(batch):
                return
            body = EventBatch(batch.events, lambda name: ("stripe_customer_id", "value")).to_json()
            answer = http.post(
                "/v2/billing/meter_event_stream",
                content=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            assert answer.status_code == 200, answer.text
            spool.ack(batch.seqs)


def cancel(emulator: Emulator, event_name: str, identifier: str) -> None:
    response = httpx.post(
        emulator.url + "/v2/billing/meter_event_adjustments",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"event_name": event_name, "type": "cancel", "cancel": {"identifier": identifier}},
    )
    assert response.status_code == 200, response.text


def run(emulator: Emulator, *args: str) -> subprocess.CompletedProcess[str]:
    return cli.run("reconcile", "--base", emulator.url, "--api-key", KEY, *args)


def hours() -> tuple[int, int]:
    """A range of whole hours holding the last three hours and this one."""
    this_hour = int(time.time()) // HOUR * HOUR
    return this_hour - 3 * HOUR, this_hour + HOUR


def fill(spool: Spool, since: int) -> list[tuple[Any, ...]]:
    """Events over three past hours for two customers, values of three kinds."""
    events = []
    for n in range(60):
        ts = since + (n % 3) * HOUR + 60 + n
        value: Any = [3, Decimal("0.25"), 1.5][n % 3]
        events.append(("api_calls", f"cus_{n % 2}", value, float(ts), f"ev-{n}", None))
    for event in events:
        spool.append_row(event)
    return events


def test_a_clean_run_agrees(emulator: Emulator, spool_path: str) -> None:
    create_meter(emulator, "api_calls")
    since, until = hours()
    spool = Spool(spool_path)
    fill(spool, since)
    deliver(spool, emulator)
    spool.close()
    result = run(emulator, "--spool", spool_path, "--since", str(since), "--until", str(until),
                 "--window", "hour", "--grace", "0")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "total: all 6 windows agree" in result.stdout


def test_a_cancelled_event_is_reported_with_its_customer_window_and_difference(
    emulator: Emulator, spool_path: str
) -> None:
    create_meter(emulator, "api_calls")
    since, until = hours()
    spool = Spool(spool_path)
    events = fill(spool, since)
    deliver(spool, emulator)
    spool.close()
    gone = events[4]  # cus_0, the second hour, value 0.25
    cancel(emulator, "api_calls", gone[4])
    result = run(emulator, "--spool", spool_path, "--since", str(since), "--until", str(until),
                 "--window", "hour", "--grace", "0")  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    # The window in ISO 8601, as --since takes it.
    window = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since + HOUR))
    differing = [line for line in lines if line and line[0] == "cus_0"]
    assert differing == [["cus_0", "api_calls", window, "2.5", "2.25", "-0.25"]]
    assert "total: 1 window of 6 differ" in result.stdout

    as_json = run(emulator, "--spool", spool_path, "--since", str(since), "--until", str(until),
                  "--window", "hour", "--grace", "0", "--json")  # fmt: skip
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["agrees"] is False and report["differing"] == 1
    (row,) = [r for r in report["rows"] if r["status"] == "differs"]
    assert (row["customer"], row["start_time"], row["difference"]) == (
        "cus_0",
        since + HOUR,
        "-0.25",
    )


def test_events_stripe_refused_later_agree_once_moved_to_dead_letters(
    emulator: Emulator, spool_path: str
) -> None:
    since, until = hours()
    create_meter(emulator, "api_calls")
    spool = Spool(spool_path)
    fill(spool, since)
    # Accepted by the stream, then refused by Stripe's asynchronous validation:
    # no meter for this event name.
    spool.append_row(("unmetered", "cus_0", 7, float(since + 30), "lost-1", None))
    deliver(spool, emulator)
    spool.close()
    args = ["--spool", spool_path, "--since", str(since), "--until", str(until), "--grace", "0"]
    before = run(emulator, *args, "--window", "hour")
    assert before.returncode == 1
    assert "unmetered (no meter)" in before.stdout
    assert "no active meter at Stripe for: unmetered" in before.stdout

    spool = Spool(spool_path)  # what handle_webhook does with Stripe's report
    assert spool.bury_identifiers(["lost-1"], "no_meter", "no_meter", "no meter") == 1
    spool.close()
    after = run(emulator, *args, "--window", "hour")
    assert after.returncode == 0, after.stdout


def test_count_and_last_meters_are_aggregated_as_the_meter_does(
    emulator: Emulator, spool_path: str
) -> None:
    since, until = hours()
    create_meter(emulator, "searches", "count")
    create_meter(emulator, "seats", "last")
    spool = Spool(spool_path)
    for n in range(10):
        spool.append_row(("searches", "cus_1", 5, float(since + 100 + n), f"s-{n}", None))
        spool.append_row(("seats", "cus_1", n + 1, float(since + 100 + n), f"t-{n}", None))
    deliver(spool, emulator)
    spool.close()
    result = run(emulator, "--spool", spool_path, "--since", str(since), "--until", str(until),
                 "--window", "day" if since % 86400 == 0 and until % 86400 == 0 else "hour",
                 "--grace", "0", "--json")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert {(r["event_name"], r["spool"]) for r in rows} == {("searches", "10"), ("seats", "10")}


def test_recent_events_are_not_compared_within_the_grace_period(
    emulator: Emulator, spool_path: str
) -> None:
    create_meter(emulator, "api_calls")
    since, until = hours()
    spool = Spool(spool_path)
    events = fill(spool, since)
    deliver(spool, emulator)
    spool.close()
    cancel(emulator, "api_calls", events[0][4])
    result = run(emulator, "--spool", spool_path, "--since", str(since), "--until", str(until),
                 "--window", "hour")  # fmt: skip
    assert result.returncode == 0, result.stdout
    assert "6 windows with events accepted or cancelled within the grace period" in result.stdout
    # Nothing was compared: not "all 0 windows agree".
    assert "total: nothing was compared yet" in result.stdout
    assert "agree" not in result.stdout


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (
            ["--since", "1000", "--until", "7200", "--window", "hour"],
            "--since must fall on an hour",
        ),
        (["--since", "3600", "--until", "7200", "--window", "day"], "UTC midnight"),
        (["--since", "7200", "--until", "3600", "--window", "hour"], "--until must be after"),
    ],
)
def test_unaligned_times_exit_2_with_a_hint(
    emulator: Emulator, spool_path: str, args: list[str], hint: str
) -> None:
    Spool(spool_path).close()
    result = run(emulator, "--spool", spool_path, *args)
    assert result.returncode == 2
    assert hint in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreadable_spool_exits_2(emulator: Emulator, tmp_path: Path) -> None:
    missing = run(emulator, "--spool", str(tmp_path / "nope.db"), "--since", "0", "--until", "3600",
                  "--window", "hour")  # fmt: skip
    assert missing.returncode == 2
    assert "--spool" in missing.stderr and "no spool" in missing.stderr
    (tmp_path / "text.db").write_text("hello")
    text = run(emulator, "--spool", str(tmp_path / "text.db"), "--since", "0", "--until", "3600",
               "--window", "hour")  # fmt: skip
    assert text.returncode == 2
    assert "not a SQLite database" in text.stderr
