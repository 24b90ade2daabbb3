"""Real servers for network tests, all on 127.0.0.1.

* :class:`TlsEmulator`: the emulator's ASGI app served by hypercorn over TLS
  with a ``trustme`` CA, HTTP/2 and HTTP/1.1 offered by ALPN; it notes each
  request's HTTP version, and can stall or trickle answers on cue.
* :class:`ForwardProxy`: a small threaded HTTP proxy, ``CONNECT`` tunnels for
  https and absolute-form requests for http, with optional Basic
  ``Proxy-Authorization``. Written here rather than taken from PyPI: it is
  seventy lines, runs in the test's process, and records what it was asked
  (the targets and the credentials), which the tests check.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import threading
from pathlib import Path
from typing import Any, Optional

import trustme

from meterstream.emulator import EmulatorState
from meterstream.emulator._app import create_app
from meterstream.emulator._uvicorn_server import bind_socket

Scope = dict[str, Any]


class TlsEmulator:
    """The emulator over TLS (h2 and http/1.1) with hypercorn, in a thread.

    Attributes:
        url: ``https://localhost:<port>`` (the certificate names localhost).
        versions: the HTTP version of each request, in order, with its path.
        stall: ``{path: n}``: the next *n* requests to *path* get their answer's
            head, then one body byte every ``stall_interval`` seconds, for ever.
        hang: ``{path: n}``: the next *n* requests to *path* are never answered.
    """

    def __init__(
        self, ca: trustme.CA, tmp_path: Path, *, alpn: tuple[str, ...] = ("h2", "http/1.1")
    ):
        from hypercorn.config import Config

        self.state = EmulatorState(auto_create_meters=True)
        self._app = create_app(self.state)
        self.versions: list[tuple[str, str]] = []
        self.stall: dict[str, int] = {}
        self.hang: dict[str, int] = {}
        self.stall_interval = 0.1
        pem = tmp_path / "server.pem"
        ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
            str(pem)
        )
        sock = bind_socket("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.url = f"https://localhost:{self.port}"
        config = Config()
        config.bind = [f"fd://{sock.detach()}"]
        config.certfile = config.keyfile = str(pem)
        config.alpn_protocols = list(alpn)
        config.graceful_timeout = 0.5
        config.accesslog = None
        config.errorlog = None
        self._config = config
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stopping: Optional[asyncio.Event] = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tls-emulator", daemon=True)

    async def _asgi(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.versions.append((scope["http_version"], scope["path"]))
            if _take(self.hang, scope["path"]):
                assert self._stopping is not None
                await self._stopping.wait()
                return
            if _take(self.stall, scope["path"]):
                await send({"type": "http.response.start", "status": 200, "headers": []})
                assert self._stopping is not None
                while not self._stopping.is_set():
                    await send({"type": "http.response.body", "body": b" ", "more_body": True})
                    await asyncio.sleep(self.stall_interval)
                return
        await self._app(scope, receive, send)

    def _run(self) -> None:
        from hypercorn.asyncio import serve

        loop = asyncio.new_event_loop()
        self._loop = loop

        async def main() -> None:
            self._stopping = asyncio.Event()
            self._ready.set()
            await serve(self._asgi, self._config, shutdown_trigger=self._stopping.wait)  # type: ignore[arg-type]

        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    def __enter__(self) -> TlsEmulator:
        self._thread.start()
        assert self._ready.wait(10)
        # Serving once a TLS handshake completes.
        for _ in range(200):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            threading.Event().wait(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    def identifiers(self) -> set[str]:
        return {str(event["identifier"]) for event in self.state.events()}


def _take(counts: dict[str, int], path: str) -> bool:
    if counts.get(path, 0) > 0:
        counts[path] -= 1
        return True
    return False


class ForwardProxy:
    """A threaded HTTP forward proxy on 127.0.0.1: CONNECT and absolute-form.

    Attributes:
        url: ``http://127.0.0.1:<port>`` (with ``user:password@`` to use).
        requests: ``(method, target, Proxy-Authorization or None)`` per request.
    """

    def __init__(
        self,
        credentials: Optional[tuple[str, str]] = None,
        port: int = 0,
        tls: Optional[ssl.SSLContext] = None,
    ) -> None:
        self._credentials = credentials
        self._tls = tls
        self.requests: list[tuple[str, str, Optional[str]]] = []
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        # An https:// proxy: TLS to the proxy itself (its certificate names localhost).
        self.url = f"https://localhost:{self.port}" if tls else f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)

    @property
    def targets(self) -> list[str]:
        with self._lock:
            return [target for _, target, _ in self.requests]

    def __enter__(self) -> ForwardProxy:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in [self._acceptor, *self._threads]:
            thread.join(5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._sockets.update(socks)

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        upstream: Optional[socket.socket] = None
        try:
            if self._tls is not None:
                client.settimeout(10)
                client = self._tls.wrap_socket(client, server_side=True)
                client.settimeout(None)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = client.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ", 2)
            headers = [line.split(":", 1) for line in lines[1:]]
            auth = next((v.strip() for k, v in headers if k.lower() == "proxy-authorization"), None)
            with self._lock:
                self.requests.append((method, target, auth))
            if self._credentials is not None:
                expected = "Basic " + base64.b64encode(":".join(self._credentials).encode()).decode(
                    "ascii"
                )
                if auth != expected:
                    client.sendall(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n'
                        b"Connection: close\r\n\r\n"
                    )
                    return
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                upstream = socket.create_connection((host, int(port)), timeout=10)
                self._track(upstream)
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                # Absolute form: "POST http://host:port/path HTTP/1.1" goes out
                # as "POST /path HTTP/1.1", without the proxy's own headers, and
                # the connection closes after the answer (one request each).
                scheme, _, remainder = target.partition("://")
                assert scheme == "http", target
                hostport, slash, path = remainder.partition("/")
                host, _, port = hostport.rpartition(":")
                length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
                while len(rest) < length:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    rest += chunk
                upstream = socket.create_connection((host, int(port or 80)), timeout=10)
                self._track(upstream)
                dropped = ("proxy-authorization", "connection", "proxy-connection")
                kept = [f"{k}:{v}" for k, v in headers if k.lower() not in dropped]
                upstream.sendall(
                    "\r\n".join(
                        [f"{method} {slash}{path} {version}", *kept, "Connection: close"]
                    ).encode("latin-1")
                    + b"\r\n\r\n"
                    + rest
                )
                _pipe(upstream, client)
                return
            upstream.settimeout(None)
            if rest:
                upstream.sendall(rest)
            pump = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            pump.start()
            _pipe(client, upstream)
            pump.join(5)
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
