"""End to end: the examples under real servers, delivering to an in-test emulator.

The FastAPI example runs under uvicorn, the Django example under gunicorn
with ``--preload`` and two workers. Concurrent clients send a few thousand
requests, each for one of K customers; the server is stopped with SIGTERM;
then the emulator must hold every use exactly once, under the right customer.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("httptools")

import httpx

from helpers.poll import wait_for
from helpers.ports import free_port
from meterstream.emulator import Emulator

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX servers and signals"),
]

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk_test_integrations"
REQUESTS = 3000
THREADS = 8
K = 5


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"auto_create_meters": True}


def start_server(argv: list[str], emulator: Emulator, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "METERSTREAM_API_KEY": API_KEY,
        "METERSTREAM_API_BASE": emulator.url,
        "METERSTREAM_STREAM_BASE": emulator.url,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            return True
        try:
            probe = httpx.get(url + "/search?q=probe", headers={"X-Customer-Id": "cus_probe"})
            return probe.status_code == 200
        except httpx.TransportError:
            return False

    if not wait_for(up, timeout=30) or proc.poll() is not None:
        proc.kill()
        raise AssertionError("server did not start:\n" + proc.communicate()[0].decode())
    return proc


def stop_server(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        output = proc.communicate(timeout=30)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        proc.kill()
        output = proc.communicate()[0].decode(errors="replace")
        raise AssertionError("server did not stop on SIGTERM:\n" + output) from None
    # uvicorn re-raises the signal once it has shut down gracefully.
    assert proc.returncode in (0, -signal.SIGTERM), output
    return output


def drive(port: int) -> dict[str, Any]:
    """Send REQUESTS requests from THREADS threads; return what each customer should owe."""
    searches: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    requests: Counter[str] = Counter()
    errors: list[str] = []
    lock = threading.Lock()

    def worker(first: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for n in range(first, REQUESTS, THREADS):
                if n % 10 == 9:  # the API-key table
                    customer, headers = "cus_alice", {"X-Api-Key": "key_alice"}
                else:
                    customer, headers = f"cus_{n % K}", {"X-Customer-Id": f"cus_{n % K}"}
                if n % 4 == 3:
                    prompt = " ".join(["word"] * (n % 7 + 1))
                    response = http.post("/complete", json={"prompt": prompt}, headers=headers)
                else:
                    response = http.get("/search", params={"q": f"query {n}"}, headers=headers)
                try:
                    body = response.json()
                except ValueError:
                    body = {}
                with lock:
                    if response.status_code != 200 or body.get("customer") != customer:
                        errors.append(f"{n}: {response.status_code} {response.text[:200]}")
                        continue
                    requests[customer] += 1
                    if "usage" in body:
                        tokens[customer] += body["usage"]["total_tokens"]
                    else:
                        searches[customer] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [], errors[:5]
    return {"searches": searches, "tokens": tokens, "requests": requests}


def assert_billed_exactly_once(emulator: Emulator, expected: dict[str, Any]) -> None:
    state = emulator.state
    assert state.duplicates == 0
    events = state.events()
    assert len({e["identifier"] for e in events}) == len(events)
    assert state.validation_errors == []
    customers = set(expected["requests"])
    assert len(customers) == K + 1
    for customer in customers:
        assert state.total("ai_search_api", customer).count == expected["searches"][customer]
        assert state.total("llm_tokens", customer).sum == expected["tokens"][customer]
        assert state.total("api_requests", customer).count == expected["requests"][customer]
    # Nothing billed to anyone else (the startup probes aside).
    billed = {customer for (_, customer) in state.totals()}
    assert billed <= customers | {"cus_probe"}
    assert sum(expected["requests"].values()) == REQUESTS


def test_fastapi_example_under_uvicorn_bills_every_request_once(emulator: Emulator) -> None:
    port = free_port()
    proc = start_server(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "examples.fastapi_app.app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        emulator,
        port,
    )
    try:
        expected = drive(port)
    finally:
        output = stop_server(proc)
    assert "Traceback" not in output, output
    assert_billed_exactly_once(emulator, expected)


def senders(emulator: Emulator) -> int:
    """How many processes minted identifiers (each has its own random prefix)."""
    return len({e["identifier"].rpartition("_")[0] for e in emulator.state.events()})


def test_django_example_under_gunicorn_preload_bills_every_request_once(
    emulator: Emulator,
) -> None:
    pytest.importorskip("django")
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    if gunicorn is None:
        pytest.skip("gunicorn is not installed")
    port = free_port()
    proc = start_server(
        [
            gunicorn,
            "--preload",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--graceful-timeout",
            "10",
            "examples.django_app.wsgi:application",
        ],
        emulator,
        port,
    )
    try:
        expected = drive(port)
    finally:
        output = stop_server(proc)
    assert "Traceback" not in output, output
    assert_billed_exactly_once(emulator, expected)
    assert senders(emulator) == 2, "expected both forked workers to deliver"
