"""cancel() of an event another live process holds in its journal: asked, answered, honoured."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from helpers.clients import ClientFactory
from helpers.poll import wait_for
from meterstream._spool.spool import Spool
from meterstream.emulator import Emulator, Total

KEY = "sk_test_across"

pytestmark = pytest.mark.slow


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"auto_create_meters": True}


@pytest.fixture
def client_settings(emulator: Emulator) -> dict[str, Any]:
    return {
        "api_key": KEY,
        "exporter": "stripe",
        "api_base": emulator.url,
        "stream_base": emulator.url,
        "flush_interval": 3600,
        "retry_initial_delay": 0.01,
        "retry_max_delay": 0.05,
        "raise_errors": True,
    }


class Holder:
    """Process A: a client on the spool, driven line by line over its stdin."""

    def __init__(self, emulator: Emulator, path: str, max_retry_time: float) -> None:
        script = textwrap.dedent(
            f"""
            import sys
            from meterstream import MeterClient
            client = MeterClient(api_key={KEY!r}, api_base={emulator.url!r},
                stream_base={emulator.url!r}, exporter="stripe", spool_path={path!r},
                flush_interval=3600, retry_initial_delay=0.01, retry_max_delay=0.05,
                max_retry_time={max_retry_time!r}, raise_errors=True)
            print("ready", flush=True)
            for line in sys.stdin:
                command, *args = line.split()
                if command == "record":
                    client.record("api", int(args[1]), customer="cus_x", identifier=args[0])
                    print("ok", flush=True)
                elif command == "flush":
                    print(client.flush(float(args[0])), flush=True)
                elif command == "quit":
                    client.shutdown(2)
                    print("bye", flush=True)
                    break
            """
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = self.read()
        if ready != "ready":
            assert self.process.stderr is not None
            self.process.kill()
            raise AssertionError(f"the holder did not start: {self.process.stderr.read()}")

    def read(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def ask(self, line: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.read()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)

    def close(self) -> None:
        if self.process.poll() is None:
            self.ask("quit")
            self.process.wait(30)
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.stdout.close()
        assert self.process.stderr is not None
        self.process.stderr.close()


Start = Callable[[float], Holder]


@pytest.fixture
def holder(emulator: Emulator, tmp_path: Path) -> Iterator[Start]:
    made: list[Holder] = []

    def start(max_retry_time: float = 60.0) -> Holder:
        made.append(Holder(emulator, str(tmp_path / "meter.db"), max_retry_time))
        return made[-1]

    yield start
    for one in made:
        if one.process.poll() is None:
            os.kill(one.process.pid, signal.SIGCONT)
        one.close()


def ids(emulator: Emulator) -> list[str]:
    return [e["identifier"] for e in emulator.state.events("api")]


def adjustments(emulator: Emulator) -> int:
    found: dict[str, int] = emulator.state.snapshot()["requests"].get("meter_event_adjustments", {})
    return found.get("200", 0)


def requests(path: str) -> list[tuple[str, int, Optional[str]]]:
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT identifier, standing, state FROM withdraw_requests ORDER BY id"
        ).fetchall()
    db.close()
    return [(str(r[0]), int(r[1]), r[2]) for r in rows]


def test_an_event_waiting_in_a_live_process_after_an_outage_is_withdrawn_and_never_sent(
    emulator: Emulator, make_client: ClientFactory, holder: Start, tmp_path: Path
) -> None:
    path = str(tmp_path / "meter.db")
    emulator.set_faults(fail_500=1.0)
    a = holder(0.2)  # gives up quickly: its events go back to wait in its journal
    assert a.ask("record x-1 5") == "ok" and a.ask("record kept-1 3") == "ok"
    a.ask("flush 2")  # tried through the outage, given back
    b = make_client(spool_path=path)
    assert b.cancel("x-1", "api") == "withdrawn"
    assert b.stats()["cancels_withdrawn"] == 1
    assert requests(path) == [("x-1", 0, "withdrawn")]
    emulator.set_faults(fail_500=0.0)
    assert wait_for(lambda: a.ask("flush 5") == "True")
    assert ids(emulator) == ["kept-1"]
    a.close()
    b.shutdown(1)
    again = make_client(spool_path=path)  # withdrawn for good: no process sends it
    assert again.flush(5) and ids(emulator) == ["kept-1"]
    assert emulator.state.total("api", "cus_x") == Total(3.0, 1)


def test_an_event_in_flight_in_a_live_process_is_cancelled_once_it_was_accepted(
    emulator: Emulator, make_client: ClientFactory, holder: Start, tmp_path: Path
) -> None:
    path = str(tmp_path / "meter.db")
    emulator.set_faults(fail_500=1.0)
    a = holder(60.0)  # keeps retrying: the event stays in flight
    assert a.ask("record x-2 5") == "ok"
    assert a.ask("flush 0.3") == "False"
    b = make_client(spool_path=path)
    assert b.cancel("x-2", "api") == "queued"  # its holder says: on its way
    assert requests(path) == [("x-2", 0, "in_flight")]
    assert not b.flush(0.5) and adjustments(emulator) == 0  # waits for the event
    emulator.set_faults(fail_500=0.0)
    assert wait_for(lambda: a.ask("flush 5") == "True")
    assert b.flush(10)
    assert ids(emulator) == ["x-2"] and adjustments(emulator) == 1
    assert emulator.state.total("api", "cus_x") == Total(0.0, 0)


def test_a_holder_that_does_not_answer_in_time_leaves_the_adjustment_queued(
    emulator: Emulator, make_client: ClientFactory, holder: Start, tmp_path: Path
) -> None:
    path = str(tmp_path / "meter.db")
    a = holder(60.0)
    assert a.ask("record x-3 5") == "ok"
    os.kill(a.process.pid, signal.SIGSTOP)  # stuck: it answers nothing
    b = make_client(spool_path=path)
    assert b.cancel("x-3", "api") == "queued"  # not withdrawn: it may still be sent
    assert requests(path) == [("x-3", 0, "revoked")]
    assert not b.flush(0.3) and adjustments(emulator) == 0  # not before the event
    os.kill(a.process.pid, signal.SIGCONT)
    assert wait_for(lambda: a.ask("flush 5") == "True")  # the revoked request: it is sent
    assert b.flush(10)
    assert ids(emulator) == ["x-3"] and adjustments(emulator) == 1
    assert emulator.state.total("api", "cus_x") == Total(0.0, 0)


def test_a_request_pending_when_its_holder_is_killed_is_answered_by_the_adopter(
    emulator: Emulator, make_client: ClientFactory, holder: Start, tmp_path: Path
) -> None:
    path = str(tmp_path / "meter.db")
    a = holder(60.0)
    assert a.ask("record x-4 5") == "ok" and a.ask("record kept-4 3") == "ok"
    os.kill(a.process.pid, signal.SIGSTOP)
    b = make_client(spool_path=path)
    outcome: list[Optional[str]] = []
    asking = threading.Thread(target=lambda: outcome.append(b.cancel("x-4", "api")))
    asking.start()
    assert wait_for(lambda: requests(path) == [("x-4", 0, None)])
    a.kill()  # SIGKILL while the request waits for its answer
    asking.join(30)
    assert outcome == ["withdrawn"]  # b adopted the dead process's segment and withdrew it
    assert requests(path) == [("x-4", 0, "withdrawn")]
    assert b.flush(10) and ids(emulator) == ["kept-4"]
    b.shutdown(1)
    again = make_client(spool_path=path)
    assert again.flush(5) and ids(emulator) == ["kept-4"]


def test_a_standing_request_is_honoured_by_the_process_adopting_a_killed_holder(
    emulator: Emulator, make_client: ClientFactory, holder: Start, tmp_path: Path
) -> None:
    path = str(tmp_path / "meter.db")
    a = holder(60.0)
    assert a.ask("record x-5 5") == "ok" and a.ask("record kept-5 3") == "ok"
    os.kill(a.process.pid, signal.SIGSTOP)
    spool = Spool(path)
    try:
        assert spool.pending_state("x-5") == "pending"  # what the CLI's dry-run shows
        # A destination that cannot cancel (Metronome): no answer, the request stands.
        assert spool.withdraw("x-5", standing=True) == "in_flight"
    finally:
        spool.close()
    assert requests(path) == [("x-5", 1, None)]
    a.kill()
    adopter = make_client(spool_path=path)  # takes over the dead process's journal
    assert adopter.flush(10)
    assert ids(emulator) == ["kept-5"]
    assert requests(path) == [("x-5", 1, "withdrawn")]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM withdrawn WHERE identifier = 'x-5'").fetchone()
    db.close()
    assert emulator.state.total("api", "cus_x") == Total(3.0, 1)
