"""SIGTERM with events still buffered, on real processes and servers.

What each server does with SIGTERM (the table in docs/delivery.md) comes from
tests/sigterm/harness.py; these tests keep the rows that matter true.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import pytest

from meterstream.emulator import Emulator

from .harness import API_KEY, EVENT, PLAIN, ROOT, measure_http, measure_plain

pytestmark = pytest.mark.slow


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"auto_create_meters": True}


def test_a_plain_process_loses_its_buffer_to_sigterm(emulator: Emulator) -> None:
    # The problem itself: SIGTERM's default action skips atexit.
    outcome = measure_plain(emulator, drain=False)
    assert outcome.returncode == -15
    assert outcome.delivered == 0


def test_with_drain_on_sigterm_a_plain_process_delivers_everything(emulator: Emulator) -> None:
    outcome = measure_plain(emulator, drain=True)
    assert outcome.server == PLAIN
    assert outcome.delivered == outcome.recorded
    # and it still ends the way SIGTERM's default action would
    assert outcome.returncode == -15


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_drains_its_own_buffer(emulator: Emulator) -> None:
    idents = [f"fork-{uuid.uuid4().hex[:8]}-{n}" for n in range(3)]
    script = f"""
import os, signal, sys
import meterstream
meterstream.configure(api_key={API_KEY!r}, api_base={emulator.url!r},
                      stream_base={emulator.url!r}, flush_interval=60)
meterstream.drain_on_sigterm()
meterstream.record({EVENT!r}, 1, customer="cus_parent", identifier={idents[0]!r})
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    for ident in {idents[1:]!r}:
        meterstream.record({EVENT!r}, 1, customer="cus_child", identifier=ident)
    os.write(write, b"r")
    signal.pause()
    os._exit(3)
os.read(read, 1)
os.kill(pid, signal.SIGTERM)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
meterstream.shutdown()
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "-15"
    stored = [e for e in emulator.state.events(EVENT) if e["identifier"] in idents]
    # the child delivered its two, the parent its one: none twice
    assert sorted(e["identifier"] for e in stored) == sorted(idents)


@pytest.mark.parametrize(
    "server",
    ["uvicorn", "flask run", "Django runserver --noreload"],
)
def test_servers_that_lose_the_buffer_deliver_it_with_the_opt_in(
    emulator: Emulator, server: str
) -> None:
    without = measure_http(emulator, server, drain=False)
    assert without.delivered == 0, "the docs say this server loses its buffer"
    with_drain = measure_http(emulator, server, drain=True)
    assert with_drain.delivered == with_drain.recorded
    assert with_drain.returncode == without.returncode


@pytest.mark.parametrize("server", ["gunicorn (sync worker)", "uvicorn + MeterstreamMiddleware"])
def test_servers_that_already_drain_are_not_made_worse_by_the_opt_in(
    emulator: Emulator, server: str
) -> None:
    if server.startswith("gunicorn"):
        pytest.importorskip("gunicorn")
    without = measure_http(emulator, server, drain=False)
    assert without.delivered == without.recorded
    with_drain = measure_http(emulator, server, drain=True)
    assert with_drain.delivered == with_drain.recorded
    assert with_drain.returncode == without.returncode
