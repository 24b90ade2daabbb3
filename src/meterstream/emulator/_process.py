"""The emulator in a child process (``python -m meterstream.emulator``)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable
from types import TracebackType
from typing import IO, Any, Optional

from meterstream.emulator._faults import FaultConfig

__all__ = ["SpawnedEmulator", "emulator_args", "spawn"]


def emulator_args(
    *,
    host: str,
    port: int,
    session_ttl: float,
    api_keys: Optional[Iterable[str]],
    auto_create_meters: bool,
    faults: Optional[FaultConfig],
    seed: Optional[int],
) -> list[str]:
    """The command-line flags that start an emulator with these options."""
    args = ["--host", host, "--port", str(port), "--session-ttl", repr(float(session_ttl))]
    for key in api_keys or ():
        args += ["--api-key", key]
    if auto_create_meters:
        args.append("--auto-create-meters")
    if seed is not None:
        args += ["--seed", str(seed)]
    if faults is not None:
        f = faults
        args += ["--fail-500", repr(f.fail_500), "--fail-429", repr(f.fail_429)]
        args += ["--latency-ms", repr(f.latency_ms), "--rps-limit", repr(f.rps_limit)]
        args += ["--expire-next", str(f.expire_next)]
        if f.hang:
            args.append("--hang")
        if f.should_retry is not None:
            args += ["--should-retry", "true" if f.should_retry else "false"]
        if f.retry_after is not None:
            args += ["--retry-after", repr(f.retry_after)]
        if f.apply_to_sessions:
            args.append("--fault-sessions")
        if f.reject_identifier is not None:
            args += ["--reject-identifier", f.reject_identifier]
        if not f.reject_names_event:
            args.append("--reject-without-param")
        if f.redirect_status:
            args += ["--redirect-status", str(f.redirect_status)]
            args += ["--redirect-location", f.redirect_location]
        if f.session_trickle_ms:
            args += ["--session-trickle-ms", repr(f.session_trickle_ms)]
        if f.session_pad_bytes:
            args += ["--session-pad-bytes", str(f.session_pad_bytes)]
    return args


class SpawnedEmulator:
    """Handle on an emulator running in a child process; ``stop()`` ends it."""

    def __init__(
        self, process: subprocess.Popen[str], url: str, reader: Optional[threading.Thread] = None
    ) -> None:
        self.process = process
        self._reader = reader
        self.url = url
        self.api_base = url
        self.stream_base = url
        self.port = int(url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        return self.process.pid

    def _admin(self, method: str, path: str, body: Optional[dict[str, Any]] = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ValueError(exc.read().decode("utf-8", "replace")) from None

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """``POST /_emulator/faults``; returns the new fault settings."""
        result: dict[str, Any] = self._admin("POST", "/_emulator/faults", changes)
        return result

    def refuse_connections(self, seconds: float) -> None:
        """Stop listening for ``seconds``, then listen again on the same port."""
        self._admin(
            "POST", "/_emulator/faults", {"refuse_connections": True, "refuse_seconds": seconds}
        )

    def snapshot(self) -> dict[str, Any]:
        """``GET /_emulator/state``."""
        result: dict[str, Any] = self._admin("GET", "/_emulator/state")
        return result

    def reset(self) -> None:
        self._admin("POST", "/_emulator/reset", {})

    def stop(self, timeout: float = 10.0) -> int:
        """Terminate the process (SIGTERM, then SIGKILL); return its exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> SpawnedEmulator:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()


def _drain(stream: IO[str], lines: queue.Queue[Optional[str]]) -> None:
    # Keep reading so the child never blocks on a full pipe.
    for line in stream:
        lines.put(line)
    lines.put(None)


def spawn(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    session_ttl: float = 900.0,
    api_keys: Optional[Iterable[str]] = None,
    auto_create_meters: bool = False,
    faults: Optional[FaultConfig] = None,
    seed: Optional[int] = None,
    extra_args: Iterable[str] = (),
    startup_timeout: float = 20.0,
) -> SpawnedEmulator:
    """Start ``python -m meterstream.emulator`` and wait for the URL it prints."""
    args = emulator_args(
        host=host,
        port=port,
        session_ttl=session_ttl,
        api_keys=api_keys,
        auto_create_meters=auto_create_meters,
        faults=faults,
        seed=seed,
    )
    env = dict(os.environ)
    # The child must import this very meterstream, installed or not.
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "meterstream.emulator", *args, *extra_args],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert process.stdout is not None
    lines: queue.Queue[Optional[str]] = queue.Queue()
    reader = threading.Thread(
        target=_drain,
        args=(process.stdout, lines),
        name="meterstream-emulator-stdout",
        daemon=True,
    )
    reader.start()
    try:
        line = lines.get(timeout=startup_timeout)
    except queue.Empty:
        line = None
    if not line or not line.startswith("http"):
        process.kill()
        process.wait()
        reader.join(5)
        process.stdout.close()
        raise RuntimeError(f"the emulator process did not start (first output: {line!r})")
    return SpawnedEmulator(process, line.strip(), reader)
