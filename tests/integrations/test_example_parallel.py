"""The FastAPI example billed to Stripe and Metronome at once (both the emulator),
started as a real uvicorn process, then the two reconciled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.poll import wait_for
from helpers.ports import free_port
from meterstream.cli._main import main
from meterstream.emulator import Emulator

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk_test_example"
TOKEN = "mt_example_token"
HOUR = 3600
NAMES = ("ai_search_api", "llm_tokens", "api_requests")


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"meters": list(NAMES)}


def _metronome(emulator: Emulator, path: str, body: dict[str, Any]) -> None:
    response = httpx.post(
        emulator.url + path, json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200, response.text


def _ok(url: str) -> bool:
    """Up: a request with an unknown key gets its 401 (and bills nothing)."""
    try:
        reply = httpx.get(url + "/search?q=x", headers={"X-Api-Key": "none"}, timeout=1)
        return reply.status_code == 401
    except httpx.HTTPError:
        return False


def test_the_fastapi_example_bills_both_and_they_reconcile(
    emulator: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METRONOME_BEARER_TOKEN", TOKEN)  # for reconcile, run here
    # Metronome's side of the move: a billable metric per meter, and the
    # Stripe customer ids as ingest aliases.
    for name in NAMES:
        _metronome(
            emulator,
            "/v1/billable-metrics/create",
            {
                "name": name,
                "aggregation_type": "SUM",
                "aggregation_key": "value",
                "event_type_filter": {"in_values": [name]},
            },
        )
    for alias in ("cus_alice", "cus_bob"):
        _metronome(emulator, "/v1/customers", {"name": alias, "ingest_aliases": [alias]})
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METERSTREAM_", "STRIPE_"))}
    env.update(
        METERSTREAM_DESTINATIONS="stripe,metronome",
        METERSTREAM_API_KEY=KEY,
        METERSTREAM_API_BASE=emulator.url,
        METERSTREAM_STREAM_BASE=emulator.url,
        METRONOME_BEARER_TOKEN=TOKEN,
        METERSTREAM_METRONOME_BASE=emulator.url,
        METERSTREAM_SPOOL_PATH=str(tmp_path / "meter.db"),
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
    )
    errors = tmp_path / "uvicorn.txt"
    with errors.open("wb") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.fastapi_app.app:app", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=stderr,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _ok(url), timeout=30), errors.read_text()
        with httpx.Client(base_url=url, timeout=10) as http:
            for q in ("red shoes", "blue", "green hats"):
                reply = http.get("/search", params={"q": q}, headers={"X-Api-Key": "key_alice"})
                assert reply.status_code == 200
            reply = http.post("/complete", json={"prompt": "hi"}, headers={"X-Api-Key": "key_bob"})
            assert reply.status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)  # uvicorn stops; meterstream flushes at exit
        server.wait(30)
    # uvicorn exits 0, or (from 0.29) re-raises the SIGTERM once it has shut down.
    assert server.returncode in (0, -signal.SIGTERM), errors.read_text()
    stripe = sorted(e["identifier"] for e in emulator.state.events())
    metronome = sorted(e["transaction_id"] for e in emulator.state.metronome.events())
    assert len(stripe) == 8  # 3 searches, 1 completion, 4 requests
    assert stripe == metronome

    this_hour = int(time.time()) // HOUR * HOUR
    for extra in ([], ["--json"]):
        code = main(
            ["reconcile", "--destinations", "stripe,metronome", "--base", emulator.url]
            + ["--spool", str(tmp_path / "meter.db")]
            + ["--api-key", KEY, "--metronome-base", emulator.url, "--window", "hour"]
            + ["--since", str(this_hour - HOUR), "--until", str(this_hour + HOUR)]
            + ["--grace", "0", *extra],
        )
        out = capsys.readouterr().out
        assert code == 0, out
    result = json.loads(out)
    values = {
        (row["customer"], row["event_name"]): row["stripe"]
        for row in result["rows"]
        if row["status"] == "agrees" and float(row["stripe"])
    }
    assert {k: float(v) for k, v in values.items()} == {
        ("cus_alice", "ai_search_api"): 3.0,
        ("cus_alice", "api_requests"): 3.0,
        ("cus_bob", "api_requests"): 1.0,
        ("cus_bob", "llm_tokens"): 1.0 + 7.0,  # "hi", and "Here is a short answer to: hi"
    }
