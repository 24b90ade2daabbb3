"""Start a real server with events buffered, SIGTERM it, count what reached the emulator.

Used by the tests beside it, and runnable to print the table in
docs/delivery.md::

    python tests/sigterm/harness.py

Each server runs tests/apps/sigterm_app.py (flush_interval=60 s, so nothing
leaves the buffer by itself within the run). Three requests each record one
event with a known identifier; then the process the test started gets
SIGTERM, as a container runtime sends it to PID 1, and the emulator is asked
which identifiers arrived.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from meterstream.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk_test_sigterm"
EVENTS = 3
EVENT = "sigterm_test"


@dataclass
class Outcome:
    server: str
    drain: bool
    delivered: int
    recorded: int
    returncode: Optional[int]
    seconds: float

    @property
    def all_delivered(self) -> bool:
        return self.delivered == self.recorded


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bin(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise FileNotFoundError(name)
    return found


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


#: server name -> argv for a port. The app module is tests/apps/sigterm_app.py.
HTTP_SERVERS: dict[str, Callable[[int], list[str]]] = {
    "gunicorn (sync worker)": lambda port: [
        _bin("gunicorn"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "tests.apps.sigterm_app:app",
    ],
    "uvicorn": lambda port: _python(
        "-m",
        "uvicorn",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "tests.apps.sigterm_app:asgi_app",
    ),  # fmt: skip
    "uvicorn + MeterstreamMiddleware": lambda port: _python(
        "-m",
        "uvicorn",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "tests.apps.sigterm_app:asgi_middleware_app",
    ),
    "uvicorn.run() in a script": lambda port: _python(
        "-c",
        "import uvicorn\n"
        "from tests.apps import sigterm_app\n"
        f"uvicorn.run(sigterm_app.asgi_app, port={port}, log_level='warning')\n",
    ),
    "Django runserver": lambda port: _python(
        "-m",
        "django",
        "runserver",
        f"127.0.0.1:{port}",
        "--settings",
        "tests.apps.sigterm_django_settings",
    ),  # fmt: skip
    "Django runserver --noreload": lambda port: _python(
        "-m",
        "django",
        "runserver",
        f"127.0.0.1:{port}",
        "--noreload",
        "--settings",
        "tests.apps.sigterm_django_settings",
    ),  # fmt: skip
    "flask run": lambda port: _python(
        "-m",
        "flask",
        "--app",
        "tests.apps.sigterm_app:flask_app",
        "run",
        "--port",
        str(port),
    ),  # fmt: skip
    "flask run --reload": lambda port: _python(
        "-m",
        "flask",
        "--app",
        "tests.apps.sigterm_app:flask_app",
        "run",
        "--port",
        str(port),
        "--reload",
    ),  # fmt: skip
}

PLAIN = "plain Python process"
CELERY_POOLS = ("prefork", "threads", "solo")


def _env(emulator: Emulator, drain: bool, extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env.update(
        EMULATOR_URL=emulator.url,
        EMULATOR_API_KEY=API_KEY,
        SIGTERM_DRAIN="1" if drain else "0",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    pause = 0.02
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(pause)  # polling a process from outside: nothing to wait on
        pause = min(pause * 2, 0.2)
    return condition()


def _get(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _arrived(emulator: Emulator, idents: list[str]) -> int:
    stored = {event["identifier"] for event in emulator.state.events(EVENT)}
    return sum(1 for ident in idents if ident in stored)


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> Optional[int]:
    """SIGTERM the process we started; its return code, or None if it outlived *timeout*."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # Reloader children and pool processes live in the process group we made.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def measure_http(emulator: Emulator, server: str, *, drain: bool) -> Outcome:
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            HTTP_SERVERS[server](port),
            cwd=ROOT,
            env=_env(emulator, drain),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            if not _wait(lambda: proc.poll() is not None or _get(base), 30):
                raise AssertionError(f"{server} did not start")
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(f"{server} exited:\n{log.read().decode()}")
            tag = uuid.uuid4().hex[:8]
            idents = [f"{tag}-{n}" for n in range(EVENTS)]
            for ident in idents:
                assert _get(f"{base}?id={ident}"), f"{server}: request failed"
            started = time.monotonic()
            code = _stop(proc, 20)
            seconds = time.monotonic() - started
            # An orphaned reloader child may still deliver at its leisure;
            # what counts is what arrived by the time the process exited.
            delivered = _arrived(emulator, idents)
        finally:
            _kill_group(proc)
    return Outcome(server, drain, delivered, EVENTS, code, seconds)


PLAIN_SCRIPT = """
import os, sys
sys.path.insert(0, os.environ["APP_DIR"])
from tests.apps import sigterm_app
for ident in sys.argv[1:]:
    sigterm_app.record("id=" + ident)
print("ready", flush=True)
sys.stdin.read()
"""


def measure_plain(emulator: Emulator, *, drain: bool) -> Outcome:
    tag = uuid.uuid4().hex[:8]
    idents = [f"{tag}-{n}" for n in range(EVENTS)]
    proc = subprocess.Popen(
        [sys.executable, "-c", PLAIN_SCRIPT, *idents],
        cwd=ROOT,
        env=_env(emulator, drain, {"APP_DIR": str(ROOT)}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        started = time.monotonic()
        code = _stop(proc, 20)
        seconds = time.monotonic() - started
        delivered = _arrived(emulator, idents)
    finally:
        _kill_group(proc)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
    return Outcome(PLAIN, drain, delivered, EVENTS, code, seconds)


def measure_celery(emulator: Emulator, pool: str, *, drain: bool) -> Outcome:
    """A Celery worker on kombu's filesystem transport: no broker service needed."""
    from celery import Celery

    with tempfile.TemporaryDirectory() as aggregator:
        queue, done = Path(aggregator, "queue"), Path(aggregator, "done")
        queue.mkdir()
        done.mkdir()
        extra = {"CELERY_QUEUE_DIR": str(queue), "CELERY_DONE_DIR": str(done)}
        sender = Celery("sigterm-sender", broker="filesystem://", set_as_current=False)
        sender.conf.broker_transport_options = {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "control_folder": str(queue),
        }
        with tempfile.TemporaryFile() as log:
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", "tests.apps.sigterm_celery:celery_app",
                    "worker", "--pool", pool, "--concurrency", "1", "--loglevel", "warning",
                    "--without-heartbeat", "--without-mingle", "--without-gossip",
                ],
                cwd=ROOT,
                env=_env(emulator, drain, extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            try:
                tag = uuid.uuid4().hex[:8]
                idents = [f"{tag}-{n}" for n in range(EVENTS)]
                for ident in idents:
                    sender.send_task("sigterm.record", args=[ident])
                if not _wait(lambda: len(list(done.iterdir())) == EVENTS, 60):
                    log.seek(0)
                    raise AssertionError(f"celery tasks did not run:\n{log.read().decode()}")
                started = time.monotonic()
                code = _stop(proc, 20)
                seconds = time.monotonic() - started
                delivered = _arrived(emulator, idents)
            finally:
                _kill_group(proc)
    return Outcome(f"Celery worker --pool {pool}", drain, delivered, EVENTS, code, seconds)


def _describe(outcome: Optional[Outcome]) -> str:
    if outcome is None:
        return "n/a"
    code = "still running" if outcome.returncode is None else f"exit {outcome.returncode}"
    return f"{outcome.delivered}/{outcome.recorded} ({code}, {outcome.seconds:.1f}s)"


def main() -> None:  # pragma: no cover - prints the docs table
    rows: list[tuple[str, Optional[Outcome], Optional[Outcome]]] = []
    with Emulator(auto_create_meters=True) as emulator:
        cases: list[tuple[str, Callable[[bool], Outcome]]] = [
            (PLAIN, lambda drain: measure_plain(emulator, drain=drain))
        ]
        for server in HTTP_SERVERS:
            cases.append(
                (server, lambda drain, s=server: measure_http(emulator, s, drain=drain))  # type: ignore[misc]
            )
        for pool in CELERY_POOLS:
            cases.append(
                (
                    f"Celery worker --pool {pool}",
                    lambda drain, p=pool: measure_celery(emulator, p, drain=drain),  # type: ignore[misc]
                )
            )
        for name, run in cases:
            outcomes = []
            for drain in (False, True):
                try:
                    outcomes.append(run(drain))
                except Exception as exc:
                    print(f"{name} drain={drain}: {exc}", file=sys.stderr)
                    outcomes.append(None)
            rows.append((name, outcomes[0], outcomes[1]))
    print("| server | delivered on SIGTERM | with drain_on_sigterm() |")
    print("|---|---|---|")
    for name, without, with_drain in rows:
        print(f"| {name} | {_describe(without)} | {_describe(with_drain)} |")


if __name__ == "__main__":  # pragma: no cover
    sys.path.insert(0, str(ROOT))
    main()
