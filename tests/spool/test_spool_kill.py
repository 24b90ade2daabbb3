"""SIGKILL with a spool: what record() returned for survives, in a child or a gunicorn worker."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

import httpx
import pytest

import meterstream
from helpers.poll import wait_for
from helpers.ports import free_port
from helpers.spool import API_KEY, TESTS, assert_each_once, child, child_env, kill_when
from meterstream.emulator import Emulator

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL"),
]

KILLS = 50  # issue 25: 50 random moments, 4 threads recording at full speed


@pytest.mark.timeout(400)
def test_sigkill_at_random_moments_loses_nothing_record_returned_for(
    tmp_path: Path,
    emulator: Emulator,
    dead_url: str,
    spool_path: str,
    make_client: Callable[..., meterstream.MeterClient],
) -> None:
    rng = random.Random()
    returned: list[str] = []
    for run in range(KILLS):
        errors = tmp_path / f"stderr-{run}.txt"
        with errors.open("wb") as stderr:
            proc = child(
                "record",
                spool_path,
                # Every other child can deliver, so kills land mid-send too.
                emulator.url if run % 2 else dead_url,
                f"run{run}",
                "4",
                stdout=subprocess.PIPE,
                stderr=stderr,
            )

        # A random moment of recording, not a thread wait: counted from the
        # child's first record, so that a loaded machine, slow to schedule
        # it, still kills it while it records.
        def moment(lines: list[str], run: int = run) -> None:
            assert wait_for(lambda: lines, timeout=30), f"run {run}: the child recorded nothing"
            threading.Event().wait(rng.uniform(0.03, 0.12))

        lines = kill_when(proc, moment, errors)
        assert lines, f"run {run}: the child recorded nothing before the kill"
        returned.extend(lines)

    client = make_client(emulator.url, spool_path=spool_path)
    assert client.flush(60), client.stats()
    arrived = assert_each_once(emulator, set(returned))
    # Events recorded but killed before their line was written may arrive too;
    # nothing else may.
    assert all(ident.startswith("run") for ident in arrived)
    assert client.stats()["failed_rejected"] == 0


@pytest.mark.timeout(120)
def test_sigkill_loses_no_generated_identifier_and_delivers_each_as_record_returned_it(
    tmp_path: Path,
    emulator: Emulator,
    dead_url: str,
    spool_path: str,
    make_client: Callable[..., meterstream.MeterClient],
) -> None:
    """The default: no identifier given. The journal keeps the generated
    number, the segment the killed process's prefix; the process that
    delivers what it left sends each identifier as that ``record()`` returned it."""
    rng = random.Random()
    returned: list[str] = []
    for run in range(6):
        errors = tmp_path / f"stderr-{run}.txt"
        with errors.open("wb") as stderr:
            proc = child(
                "record",
                spool_path,
                emulator.url if run % 2 else dead_url,
                "generated",
                "4",
                stdout=subprocess.PIPE,
                stderr=stderr,
            )

        def moment(lines: list[str], run: int = run) -> None:
            assert wait_for(lambda: lines, timeout=30), f"run {run}: the child recorded nothing"
            threading.Event().wait(rng.uniform(0.03, 0.12))

        returned.extend(kill_when(proc, moment, errors))
    assert all(ident.startswith("ms_") for ident in returned)
    assert len({ident.rsplit("_", 1)[0] for ident in returned}) == 6  # one prefix a process
    client = make_client(emulator.url, spool_path=spool_path)
    assert client.flush(60), client.stats()
    arrived = assert_each_once(emulator, set(returned))
    # Those recorded but killed before their line was written may arrive too,
    # under the prefix of a process that ran: nothing else may.
    prefixes = {ident.rsplit("_", 1)[0] for ident in returned}
    assert all(ident.rsplit("_", 1)[0] in prefixes for ident in arrived)


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text()
        found.update(int(p) for p in text.split())
    return found


def _load_and_kill_one_worker(
    master: int, ok: list[str], load: Callable[[int], None], stop: threading.Event
) -> None:
    """Four threads of requests; a worker SIGKILLed once 300 got through; 300 more after."""
    assert wait_for(lambda: len(_children(master)) == 4, timeout=30)
    threads = [threading.Thread(target=load, args=(w,), daemon=True) for w in range(4)]
    for thread in threads:
        thread.start()
    assert wait_for(lambda: len(ok) >= 300, timeout=30), "no load got through"
    os.kill(min(_children(master)), signal.SIGKILL)
    served = len(ok)
    assert wait_for(lambda: len(ok) >= served + 300, timeout=30), "no load after the kill"
    stop.set()
    for thread in threads:
        thread.join(30)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
def test_gunicorn_workers_share_a_spool_and_a_killed_workers_events_arrive(
    emulator: Emulator,
    spool_path: str,
    make_client: Callable[..., meterstream.MeterClient],
) -> None:
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    if gunicorn is None:
        pytest.skip("gunicorn is not installed")
    port = free_port()
    env = {
        **child_env(),
        "EMULATOR_URL": emulator.url,
        "EMULATOR_API_KEY": API_KEY,
        "SPOOL_PATH": spool_path,
    }
    master = subprocess.Popen(
        [
            gunicorn,
            "--preload",
            "--workers",
            "4",
            "--bind",
            f"127.0.0.1:{port}",
            "--graceful-timeout",
            "10",
            "apps.spool_wsgi:app",
        ],
        cwd=str(TESTS),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    ok: list[str] = []
    ok_lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            n = 0
            while not stop.is_set():
                ident = f"req-{worker}-{n}"
                n += 1
                try:
                    response = http.get("/", params={"id": ident})
                except httpx.TransportError:
                    continue  # the killed worker's connection: no 200, no promise
                if response.status_code == 200:
                    with ok_lock:
                        ok.append(ident)

    output = ""
    started = False
    try:

        def up() -> bool:
            try:
                return httpx.get(url + "/", params={"id": "probe"}, timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        started = wait_for(up, timeout=30)
        if started:
            _load_and_kill_one_worker(master.pid, ok, load, stop)
    finally:
        stop.set()
        master.send_signal(signal.SIGTERM)
        try:
            output = master.communicate(timeout=30)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            master.kill()
            output = master.communicate()[0].decode(errors="replace")
    assert started, f"gunicorn did not start: {output}"
    assert master.returncode == 0, output

    client = make_client(emulator.url, spool_path=spool_path)
    assert client.flush(60), client.stats()
    assert_each_once(emulator, {*ok, "probe"})
