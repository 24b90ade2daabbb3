"""uvicorn as the emulator runs it: one write per loop pass, request deadlines, quick exit.

The emulator needs three things stock uvicorn does not give: a response's
head and body in one ``send``, connections closed when they do not deliver
a request in time (slowloris), and a server that stops at once when asked
from another thread. :class:`~._server.Emulator` and the CLI build on these.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import socket
from types import FrameType
from typing import Any, Optional, cast

try:
    import uvicorn
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "The meterstream emulator needs uvicorn and httptools: pip install 'meterstream[emulator]'"
    ) from exc
if importlib.util.find_spec("httptools") is None:  # pragma: no cover
    raise ImportError(
        "The meterstream emulator needs httptools: pip install 'meterstream[emulator]'"
    )

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from meterstream.emulator._app import EmulatorApp

__all__ = ["DEFAULT_IDLE_TIMEOUT", "Server", "base_url", "bind_socket", "uvicorn_config"]

_CONFIG_PARAMS = set(inspect.signature(uvicorn.Config).parameters)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket; ``port=0`` picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only
    # when it sees it, and without it Nagle plus delayed ACKs cost 40 ms a request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _OneWriteTransport:
    """Joins the writes of one event-loop pass into a single ``send``.

    uvicorn writes a response's head and body separately: two system calls
    where one does, and a system call is dear next to the rest of the work
    here (measured: about 10% more requests a second with this).
    """

    __slots__ = ("_transport", "_loop", "_chunks")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._chunks:
            self._loop.call_soon(self._flush)
        self._chunks.append(data)

    def _flush(self) -> None:
        if self._chunks:
            data = b"".join(self._chunks)
            self._chunks = []
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


#: Seconds a connection has to deliver a whole request (head and body), from
#: when it opened or its previous answer was sent; then it is closed.
DEFAULT_IDLE_TIMEOUT = 30.0


class _Protocol(HttpToolsProtocol):
    """uvicorn's protocol, closing connections that do not deliver a request in time.

    uvicorn times idle keep-alive connections only, and any byte received
    cancels that: a fresh connection that sends nothing, or trickles a head
    a byte at a time (slowloris), would stay open forever.
    """

    idle_timeout = DEFAULT_IDLE_TIMEOUT
    _request_timer: Optional[asyncio.TimerHandle] = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = cast(
            asyncio.Transport, _OneWriteTransport(transport, asyncio.get_running_loop())
        )
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._request_timer = self.loop.call_later(self.idle_timeout, self._idle_too_long)

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _idle_too_long(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def on_message_complete(self) -> None:
        self._disarm()  # a whole request: the app's time now (a hang fault may hold it)
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._arm()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._disarm()
        super().connection_lost(exc)


class Server(uvicorn.Server):
    """uvicorn's server, releasing hung requests before a signal shuts it down."""

    def __init__(self, config: uvicorn.Config, app: EmulatorApp) -> None:
        super().__init__(config)
        self._emulator_app = app

    def handle_exit(self, sig: int, frame: Optional[FrameType]) -> None:
        self._emulator_app.release_hung(closing=True)
        super().handle_exit(sig, frame)

    async def main_loop(self) -> None:
        # uvicorn polls should_exit every 0.1 s; wake at once when asked to stop
        # so that tests starting an emulator each do not wait for the tick.
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        counter = 0
        while not self.should_exit:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.1)
            counter = (counter + 1) % 864000
            if await self.on_tick(counter):
                return

    def request_exit(self) -> None:
        """Stop serving, from any thread."""
        self.should_exit = True
        loop, wake = getattr(self, "_loop", None), getattr(self, "_wake", None)
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)


def uvicorn_config(
    app: EmulatorApp, log_level: str, idle_timeout: float = DEFAULT_IDLE_TIMEOUT
) -> uvicorn.Config:
    protocol = type("_Protocol", (_Protocol,), {"idle_timeout": idle_timeout})
    options: dict[str, Any] = {
        "http": protocol,
        "loop": "asyncio",
        "lifespan": "on",
        "interface": "asgi3",
        "log_level": log_level,
        "access_log": False,
        "server_header": False,
        "date_header": False,
        "backlog": 2048,
        "timeout_keep_alive": max(1, round(idle_timeout)),
        "timeout_graceful_shutdown": 3,
        "proxy_headers": False,
    }
    return uvicorn.Config(app, **{k: v for k, v in options.items() if k in _CONFIG_PARAMS})
