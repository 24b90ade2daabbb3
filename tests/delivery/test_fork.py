"""Fork safety: os.fork, a fork that skips Python's hooks, multiprocessing, gunicorn.

Each fork happens in a fresh child interpreter started by the test (the test
process itself runs the emulator's threads, and forking a threaded process is
what these tests are about, not something pytest should do).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from helpers.delivery import API_KEY
from helpers.poll import wait_for
from helpers.ports import free_port
from meterstream.emulator import Emulator

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

PRELUDE = f"""
import os, sys, meterstream
URL = os.environ["EMULATOR_URL"]
client = meterstream.configure(api_key={API_KEY!r}, api_base=URL, stream_base=URL,
                               flush_interval=3600)
"""


def run_script(emulator: Emulator, body: str) -> None:
    script = PRELUDE + textwrap.dedent(body)
    env = {**os.environ, "EMULATOR_URL": emulator.url}
    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def assert_exactly_once(emulator: Emulator, expected: dict[str, int]) -> None:
    events = emulator.state.events("api_calls")
    assert len({e["identifier"] for e in events}) == len(events)
    assert emulator.state.duplicates == 0
    for customer, count in expected.items():
        assert emulator.state.total("api_calls", customer).count == count, customer
    assert len(events) == sum(expected.values())


def test_os_fork_child_gets_a_working_client_and_none_of_the_parents_events(
    emulator: Emulator,
) -> None:
    run_script(
        emulator,
        """
        for _ in range(50):
            meterstream.record("api_calls", 1, customer="cus_parent")   # still queued
        pid = os.fork()
        if pid == 0:
            for _ in range(30):
                meterstream.record("api_calls", 1, customer="cus_child")
            ok = meterstream.flush(20)
            os._exit(0 if ok and meterstream.stats()["sent"] == 30 else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        for _ in range(20):
            meterstream.record("api_calls", 1, customer="cus_parent")
        assert meterstream.flush(20)
        assert meterstream.stats()["sent"] == 70
    """,
    )
    assert_exactly_once(emulator, {"cus_parent": 70, "cus_child": 30})


def test_a_fork_that_skips_pythons_hooks_is_caught_by_the_pid_check(
    emulator: Emulator,
) -> None:
    # libc's fork() runs none of os.register_at_fork's hooks, like servers
    # that fork from C without telling the interpreter.
    run_script(
        emulator,
        """
        import ctypes, ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        assert meterstream.flush(20)          # a live flusher thread and session
        for _ in range(40):
            meterstream.record("api_calls", 1, customer="cus_parent")
        pid = libc.fork()
        if pid == 0:
            for _ in range(25):
                meterstream.record("api_calls", 1, customer="cus_child")
            ok = meterstream.flush(20)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert meterstream.flush(20)
    """,
    )
    assert_exactly_once(emulator, {"cus_parent": 40, "cus_child": 25})


def test_multiprocessing_fork_workers_deliver_their_own_events(emulator: Emulator) -> None:
    run_script(
        emulator,
        """
        import multiprocessing as mp

        def work(n):
            for _ in range(n):
                meterstream.record("api_calls", 1, customer=f"cus_w{n}")
            sys.exit(0 if meterstream.flush(20) else 3)

        for _ in range(10):
            meterstream.record("api_calls", 1, customer="cus_parent")
        ctx = mp.get_context("fork")
        procs = [ctx.Process(target=work, args=(n,)) for n in (11, 12, 13)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0, p.exitcode
        assert meterstream.flush(20)
    """,
    )
    assert_exactly_once(emulator, {"cus_parent": 10, "cus_w11": 11, "cus_w12": 12, "cus_w13": 13})


@pytest.mark.slow
def test_gunicorn_preload_workers_each_deliver_exactly_once(emulator: Emulator) -> None:
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    if gunicorn is None:
        pytest.skip("gunicorn is not installed")
    port = free_port()
    env = {
        **os.environ,
        "EMULATOR_URL": emulator.url,
        "EMULATOR_API_KEY": API_KEY,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    proc = subprocess.Popen(
        [
            gunicorn,
            "--preload",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--graceful-timeout",
            "10",
            "apps.wsgi_metered:app",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(url + "/health?customer=cus_probe", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        assert wait_for(up, timeout=30), "gunicorn did not start"
        pids = set()
        with httpx.Client(base_url=url, timeout=10) as http:
            for n in range(600):
                response = http.get(
                    f"/search?customer=cus_{n % 3}", headers={"Connection": "close"}
                )
                assert response.status_code == 200
                pids.add(response.text.split()[-1])
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert proc.returncode == 0, output
    assert len(pids) == 2, f"expected both workers to serve requests, got {pids}"
    probes = emulator.state.total("api_calls", "cus_probe").count
    assert_exactly_once(emulator, {"cus_0": 200, "cus_1": 200, "cus_2": 200, "cus_probe": probes})
