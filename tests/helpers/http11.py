"""A scripted raw-socket HTTP/1.1 server for the lean client's tests
(``tests/delivery/http11/``, the client is ``_exporters/stripe/_http11.py``).

Written for those tests: a thread accepts connections on
127.0.0.1 (port 0), one thread per connection reads each request (head and
``Content-Length`` body), records it with the number of the connection it came
on, and answers with the next scripted action: raw bytes, bytes then close,
close without answering, reset, bytes in pieces, a drip that never ends, or
silence. Nothing here sleeps to wait for a thread: waits are events,
conditions, or polls with a deadline.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional

from helpers.poll import wait_for
from meterstream._exporters.stripe._http11 import Http11Pool, Reply

STREAM_PATH = "/v2/billing/meter_event_stream"
REASONS = {
    100: "Continue",
    101: "Switching Protocols",
    103: "Early Hints",
    200: "OK",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


# -- what the server saw -----------------------------------------------------------------


@dataclass
class Seen:
    """One request as the server read it."""

    method: str
    path: str
    version: str
    #: (name as sent, value), in order.
    headers: list[tuple[str, str]]
    body: bytes
    #: 0 for the first connection the server accepted, 1 for the next, ...
    connection: int

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def header(self, name: str) -> Optional[str]:
        values = self.all(name)
        return values[0] if values else None


class Handle:
    """What an action gets: the connection's socket and the server's stop flag."""

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self.sock = sock
        self.stop = stop


#: Answers one request; returns whether to keep serving the connection.
Action = Callable[[Handle, Seen], bool]


# -- answers -----------------------------------------------------------------------------


def response(
    status: int = 200,
    body: bytes = b"",
    *,
    headers: Sequence[tuple[str, str]] = (),
    version: str = "HTTP/1.1",
    length: bool = True,
) -> bytes:
    """A raw answer; with a ``Content-Length`` unless *length* is false."""
    lines = [f"{version} {status} {REASONS.get(status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked_response(
    *chunks: bytes, trailers: bytes = b"", headers: Sequence[tuple[str, str]] = ()
) -> bytes:
    """A 200 framed by ``Transfer-Encoding: chunked`` (one chunk per argument)."""
    head = response(200, headers=[("Transfer-Encoding", "chunked"), *headers], length=False)
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return head + body + b"0\r\n" + trailers + b"\r\n"


def padded_head(size: int) -> bytes:
    """A status line and header lines, exactly *size* bytes, without the blank line."""
    head = b"HTTP/1.1 200 OK\r\n"
    number = 0
    while size - len(head) > 2000:
        head += b"X-Pad-%d: %s\r\n" % (number, b"a" * 1000)
        number += 1
    last = b"X-Pad-last: "
    head += last + b"b" * (size - len(head) - len(last) - 2) + b"\r\n"
    assert len(head) == size
    return head


def answer(raw: bytes) -> Action:
    """Send *raw* and keep the connection (whatever the bytes say)."""

    def act(handle: Handle, seen: Seen) -> bool:
        handle.sock.sendall(raw)
        return True

    return act


def answer_then_close(raw: bytes) -> Action:
    """Send *raw*, then close the connection."""

    def act(handle: Handle, seen: Seen) -> bool:
        handle.sock.sendall(raw)
        return False

    return act


def close_without_answer() -> Action:
    def act(handle: Handle, seen: Seen) -> bool:
        return False

    return act


def reset() -> Action:
    """Close with SO_LINGER 0: the client gets a RST, not a FIN."""

    def act(handle: Handle, seen: Seen) -> bool:
        handle.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    return act


def hang(limit: float = 3.0) -> Action:
    """Read the request and never answer; close after *limit* seconds.

    The limit only bounds a test whose client fails to give up: it then fails on
    its elapsed time, not on pytest-timeout two minutes later.
    """

    def act(handle: Handle, seen: Seen) -> bool:
        handle.stop.wait(limit)
        return False

    return act


def drip(prefix: bytes, piece: bytes, interval: float = 0.05, limit: float = 3.0) -> Action:
    """Send *prefix*, then *piece* every *interval* seconds (for *limit* seconds, then close)."""

    def act(handle: Handle, seen: Seen) -> bool:
        handle.sock.sendall(prefix)
        until = time.monotonic() + limit
        while time.monotonic() < until and not handle.stop.wait(interval):
            handle.sock.sendall(piece)
        return False

    return act


def in_pieces(*pieces: bytes, pause: float = 0.002, close: bool = False) -> Action:
    """Send each piece in its own write, *pause* seconds apart."""

    def act(handle: Handle, seen: Seen) -> bool:
        for number, piece in enumerate(pieces):
            if number and handle.stop.wait(pause):
                return False
            handle.sock.sendall(piece)
        return not close

    return act


def byte_by_byte(raw: bytes) -> Action:
    return in_pieces(*(raw[i : i + 1] for i in range(len(raw))), pause=0.0005)


def gated(gate: threading.Event, then: Action) -> Action:
    """Wait until *gate* is set (5 s at most), then answer as *then* does."""

    def act(handle: Handle, seen: Seen) -> bool:
        gate.wait(5.0)
        return then(handle, seen)

    return act


def echo() -> Action:
    """A 200 whose body is ``<path>|<request body>``; chunked when ``X-Chunked: 1``."""

    def act(handle: Handle, seen: Seen) -> bool:
        body = seen.path.encode("latin-1") + b"|" + seen.body
        if seen.header("x-chunked") == "1":
            half = len(body) // 2
            raw = chunked_response(body[:half], body[half:])
        else:
            raw = response(200, body)
        handle.sock.sendall(raw)
        return True

    return act


# -- the server --------------------------------------------------------------------------


class ScriptedServer:
    """A threaded server on 127.0.0.1 answering requests with scripted actions."""

    def __init__(self, tls: Optional[ssl.SSLContext] = None) -> None:
        self._tls = tls
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._script: deque[Action] = deque()
        #: The action once the script is used up.
        self.default: Action = echo()
        self._requests: list[Seen] = []
        self._accepted = 0
        self._open = 0
        self._done: list[threading.Event] = []
        #: Failed TLS handshakes (server side).
        self.tls_errors: list[BaseException] = []
        #: Anything other than a socket error in a handler: a bug in this file.
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._acceptor = threading.Thread(target=self._accept_loop, name="http11-test-accept")
        self._acceptor.start()

    @property
    def url(self) -> str:
        if self._tls is not None:
            return f"https://localhost:{self.port}"
        return f"http://127.0.0.1:{self.port}"

    # -- scripting and observing ------------------------------------------------------------

    def script(self, *actions: Action) -> None:
        with self._lock:
            self._script.extend(actions)

    @property
    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self._requests)

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._accepted

    @property
    def open_connections(self) -> int:
        """Connections whose handler has not closed yet."""
        with self._lock:
            return self._open

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Seen]:
        with self._changed:
            reached = self._changed.wait_for(lambda: len(self._requests) >= count, timeout)
            requests = list(self._requests)
        assert reached, f"the server saw {len(requests)} requests, expected {count}"
        return requests

    def wait_for_open_at_most(self, count: int, timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._open <= count, timeout)

    def wait_closed(self, number: int, timeout: float = 5.0) -> bool:
        """Wait until the handler of connection *number* has closed its socket."""
        assert wait_for(lambda: self.connections > number, timeout)
        with self._lock:
            done = self._done[number]
        return done.wait(timeout)

    # -- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        self._wake_writer.send(b"x")
        self._acceptor.join(5)
        self._listener.close()
        self._wake_reader.close()
        self._wake_writer.close()
        with self._lock:
            # Under the lock: a handler removes its socket (under the lock) before closing it.
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            threads = list(self._threads)
        for thread in threads:
            thread.join(5)
        assert not self._acceptor.is_alive()
        assert not [thread.name for thread in threads if thread.is_alive()]
        assert not self.errors, f"the test server failed: {self.errors!r}"

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self._listener, self._wake_reader], [], [])
            if self._wake_reader in readable:
                return
            try:
                sock, _ = self._listener.accept()
            except OSError:  # BlockingIOError: the client gave up meanwhile
                continue
            sock.setblocking(True)
            with self._lock:
                number = self._accepted
                self._accepted += 1
                self._open += 1
                done = threading.Event()
                self._done.append(done)
                self._sockets.add(sock)
                thread = threading.Thread(
                    target=self._serve, args=(sock, number, done), name=f"http11-test-{number}"
                )
                self._threads.append(thread)
            thread.start()

    def _next_action(self) -> Action:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    # -- one connection ---------------------------------------------------------------------

    def _serve(self, raw: socket.socket, number: int, done: threading.Event) -> None:
        sock = raw
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            raw.settimeout(5.0)
            if self._tls is not None:
                with self._lock:
                    if self._stop.is_set():
                        return
                    sock = self._tls.wrap_socket(
                        raw, server_side=True, do_handshake_on_connect=False
                    )
                    self._sockets.discard(raw)
                    self._sockets.add(sock)
                try:
                    sock.do_handshake()
                except (OSError, ValueError) as exc:
                    with self._lock:
                        self.tls_errors.append(exc)
                    return
            buffer = bytearray()
            while not self._stop.is_set():
                seen = self._read_request(sock, buffer, number)
                if seen is None:
                    return
                with self._changed:
                    self._requests.append(seen)
                    self._changed.notify_all()
                if not self._next_action()(Handle(sock, self._stop), seen):
                    return
        except OSError:
            return  # the client went away, or stop() shut the socket down
        except Exception as exc:
            with self._lock:
                self.errors.append(exc)
        finally:
            with self._changed:
                self._sockets.discard(sock)
                self._sockets.discard(raw)
                self._open -= 1
                self._changed.notify_all()
            sock.close()
            raw.close()
            done.set()

    @staticmethod
    def _read_request(sock: socket.socket, buffer: bytearray, number: int) -> Optional[Seen]:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buffer += chunk
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, version = lines[0].split(" ", 2)
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
        lengths = [value for name, value in headers if name.lower() == "content-length"]
        length = int(lengths[0]) if lengths else 0
        buffer[:] = rest
        while len(buffer) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buffer += chunk
        body = bytes(buffer[:length])
        del buffer[:length]
        return Seen(method, path, version, headers, body, number)


# -- what the tests share ----------------------------------------------------------------


def idle_sockets(pool: Http11Pool) -> list[socket.socket]:
    """White box: the sockets of the pool's kept connections."""
    return [connection.sock for connection in pool._idle]


def wait_until_idle_connections_are_readable(pool: Http11Pool) -> None:
    """Wait until every kept connection is readable (the server's FIN or bytes have arrived)."""

    def all_readable() -> bool:
        socks = idle_sockets(pool)
        readable, _, _ = select.select(socks, [], [], 0) if socks else ([], [], [])
        return len(readable) == len(socks)

    assert wait_for(all_readable), "the client never saw the server close"


MakeServer = Callable[..., ScriptedServer]
MakePool = Callable[..., Http11Pool]


OK = response(200, b'{"ok": true}')


def post_ok(pool: Http11Pool, body: bytes = b"{}") -> Reply:
    return pool.post(STREAM_PATH, body, {"Content-Type": "application/json"})


#: The head of a 200 framed by ``Transfer-Encoding: chunked``, its chunks to follow.
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


class PostInThread:
    """A post running on another thread, for tests that close the pool under it."""

    def __init__(self, pool: Http11Pool) -> None:
        self.outcome: list[BaseException] = []
        self.finished = threading.Event()
        self.finished_at = 0.0
        self.thread = threading.Thread(target=self._post, args=(pool,))
        self.thread.start()

    def _post(self, pool: Http11Pool) -> None:
        try:
            post_ok(pool)
        except BaseException as exc:
            self.outcome.append(exc)
        finally:
            self.finished_at = time.monotonic()
            self.finished.set()
