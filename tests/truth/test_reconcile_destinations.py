"""``meterstream reconcile`` with Metronome: Stripe against Metronome, and each
destination against its spool's accepted history."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

import meterstream
from meterstream.cli._main import main
from meterstream.emulator import Emulator

KEY = "sk_test_reconcile"
TOKEN = "mt_reconcile_token"
HOUR = 3600


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"meters": ["api_calls"]}


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRONOME_BEARER_TOKEN", TOKEN)


def _metronome(emulator: Emulator, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        emulator.url + path, json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.fixture
def billed(emulator: Emulator, tmp_path: Path) -> tuple[int, int, meterstream.MeterClient]:
    """Two customers (ingest aliases cus_0, cus_1), a SUM metric on api_calls,
    and three past hours of uses sent to both destinations with a spool."""
    _metronome(
        emulator,
        "/v1/billable-metrics/create",
        {
            "name": "API calls",
            "aggregation_type": "SUM",
            "aggregation_key": "value",
            "event_type_filter": {"in_values": ["api_calls"]},
        },
    )
    for n in range(2):
        _metronome(emulator, "/v1/customers", {"name": f"C{n}", "ingest_aliases": [f"cus_{n}"]})
    this_hour = int(time.time()) // HOUR * HOUR
    since, until = this_hour - 3 * HOUR, this_hour
    client = meterstream.MeterClient(
        destinations=["stripe", "metronome"],
        api_key=KEY,
        api_base=emulator.url,
        stream_base=emulator.url,
        metronome_api_key=TOKEN,
        metronome_base=emulator.url,
        spool_path=str(tmp_path / "meter.db"),
        flush_interval=0.01,
    )
    for n in range(30):
        value = [3, 0.25, 1.5][n % 3]
        client.record(
            "api_calls", value, customer=f"cus_{n % 2}", timestamp=since + (n % 3) * HOUR + 60 + n
        )
    assert client.flush(10)
    return since, until, client


def _run(emulator: Emulator, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(
        ["reconcile", "--base", emulator.url, "--api-key", KEY]
        + ["--metronome-base", emulator.url, "--window", "hour", "--grace", "0", *args]
    )
    return code, capsys.readouterr().out


def test_stripe_and_metronome_agree_then_a_difference_is_shown(
    emulator: Emulator,
    billed: tuple[int, int, meterstream.MeterClient],
    capsys: pytest.CaptureFixture[str],
) -> None:
    since, until, client = billed
    span = ["--since", str(since), "--until", str(until)]
    code, out = _run(emulator, capsys, "--destinations", "stripe,metronome", *span)
    assert code == 0, out
    assert "total: all 6 windows agree" in out
    # One more use at Metronome only: that customer's hour differs.
    client.destinations["metronome"].record("api_calls", 2, customer="cus_1", timestamp=since + 120)
    assert client.flush(10)
    code, out = _run(emulator, capsys, "--destinations", "stripe,metronome", *span, "--json")
    assert code == 1
    result = json.loads(out)
    [row] = [row for row in result["rows"] if row["status"] == "differs"]
    assert (row["customer"], row["start_time"]) == ("cus_1", since)
    assert Decimal(row["difference"]) == 2
    assert set(row) >= {"stripe", "metronome"}
    code, out = _run(emulator, capsys, "--destinations", "stripe,metronome", *span)
    assert code == 1
    assert "customer  event" in out and "stripe" in out and "metronome" in out
    assert "1 window of 6 differ" in out
    client.shutdown(2)


def test_each_destination_against_its_spool(
    emulator: Emulator,
    billed: tuple[int, int, meterstream.MeterClient],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    since, until, client = billed
    client.shutdown(2)
    span = ["--since", str(since), "--until", str(until)]
    stripe_spool = str(tmp_path / "meter.db")
    metronome_spool = str(tmp_path / "meter.metronome.db")
    code, out = _run(emulator, capsys, "--spool", stripe_spool, *span)
    assert code == 0, out
    code, out = _run(
        emulator, capsys, "--spool", metronome_spool, "--destination", "metronome", *span
    )
    assert code == 0, out
    assert "total: all 6 windows agree" in out
    # The customers of a cross-destination run may come from a spool too.
    code, out = _run(
        emulator, capsys, "--spool", stripe_spool, "--destinations", "metronome,stripe", *span
    )
    assert code == 0, out


def test_usage_errors_exit_2(emulator: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _run(emulator, capsys, "--destinations", "stripe,orb", "--since", "0", "--until", "3600")
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        _run(emulator, capsys, "--destination", "metronome", "--since", "0", "--until", "3600")
    assert exc.value.code == 2
