"""The lean HTTP/1.1 client (``_exporters/stripe/_http11.py``) against a scripted raw-socket server.

The server below is written for these tests: a thread accepts connections on
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Callable, Optional

import pytest
import trustme

from helpers.poll import wait_for
from meterstream._exporters.stripe._http11 import (
    MAX_BODY,
    MAX_HEAD,
    Http11Pool,
    Reply,
    TransportError,
)

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


# -- helpers and fixtures ----------------------------------------------------------------


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


@pytest.fixture
def make_server() -> Iterator[MakeServer]:
    servers: list[ScriptedServer] = []

    def make(tls: Optional[ssl.SSLContext] = None) -> ScriptedServer:
        server = ScriptedServer(tls)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: MakeServer) -> ScriptedServer:
    return make_server()


@pytest.fixture
def make_pool() -> Iterator[MakePool]:
    pools: list[Http11Pool] = []

    def make(
        base_url: str,
        *,
        timeout: float = 5.0,
        connect_timeout: float = 2.0,
        max_idle: int = 5,
        ssl_context: Optional[ssl.SSLContext] = None,
        idle_check_after: float = 1.0,
    ) -> Http11Pool:
        pool = Http11Pool(
            base_url,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_idle=max_idle,
            ssl_context=ssl_context,
            idle_check_after=idle_check_after,
        )
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


OK = response(200, b'{"ok": true}')


def post_ok(pool: Http11Pool, body: bytes = b"{}") -> Reply:
    return pool.post(STREAM_PATH, body, {"Content-Type": "application/json"})


# -- a plain answer ----------------------------------------------------------------------


def test_post_returns_status_lowercase_headers_and_body_and_sends_a_well_formed_request(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    server.script(
        answer(
            response(
                200,
                b'{"ok": true}',
                headers=[
                    ("Content-Type", "application/json"),
                    ("X-Request-ID", "req_1"),
                    ("X-Spaced", "  padded value \t"),
                ],
            )
        )
    )
    pool = make_pool(server.url)
    # CRLFs in the body, and every byte value: only Content-Length frames it.
    body = b'{"events": [1]}\r\n\r\n' + bytes(range(256))
    sent = {
        "Authorization": "Bearer tok_1",
        "Idempotency-Key": "meterstream-b1",
        "Content-Type": "application/json",
    }

    reply = pool.post(STREAM_PATH, body, sent)

    assert reply.status == 200
    assert reply.body == b'{"ok": true}'
    assert reply.headers == [
        ("content-type", "application/json"),
        ("x-request-id", "req_1"),
        ("x-spaced", "padded value"),
        ("content-length", "12"),
    ]
    (seen,) = server.requests
    assert (seen.method, seen.path, seen.version) == ("POST", STREAM_PATH, "HTTP/1.1")
    assert seen.all("Host") == [f"127.0.0.1:{server.port}"]
    assert seen.all("Content-Length") == [str(len(body))]
    assert seen.headers == [
        ("Host", f"127.0.0.1:{server.port}"),
        *sent.items(),
        ("Content-Length", str(len(body))),
    ]
    assert seen.body == body
    assert seen.connection == 0


def test_empty_body_is_sent_with_content_length_zero(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    server.script(answer(OK))
    pool = make_pool(server.url)

    assert pool.post("/empty", b"", {}).status == 200

    (seen,) = server.requests
    assert seen.all("Content-Length") == ["0"]
    assert seen.body == b""


@pytest.mark.parametrize(
    ("base_url", "host_header"),
    [
        ("http://127.0.0.1", "127.0.0.1"),
        ("http://localhost:80", "localhost"),
        ("http://LocalHost:8080/ignored/path", "localhost:8080"),
        ("http://[::1]:8080", "[::1]:8080"),
        ("https://example.test:443", "example.test"),
        ("https://example.test:8443", "example.test:8443"),
    ],
)
def test_host_header_has_the_port_only_when_not_the_default_and_brackets_ipv6(
    server: ScriptedServer, make_pool: MakePool, base_url: str, host_header: str
) -> None:
    server.script(answer(OK))
    pool = make_pool(base_url)
    # The Host header is fixed when the pool is made; aim its sockets at the test server.
    pool.host, pool.port = "127.0.0.1", server.port
    pool._tls = None

    post_ok(pool)

    (seen,) = server.requests
    assert seen.all("Host") == [host_header]


@pytest.mark.parametrize("base_url", ["ftp://example.test", "http://", "example.test:80", ""])
def test_base_url_that_is_not_http_or_https_raises_value_error(base_url: str) -> None:
    with pytest.raises(ValueError):
        Http11Pool(base_url, timeout=1.0, connect_timeout=1.0)


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 503])
def test_error_statuses_are_replies_not_errors_and_keep_the_connection(
    server: ScriptedServer, make_pool: MakePool, status: int
) -> None:
    server.script(answer(response(status, b'{"error": {}}')), answer(OK))
    pool = make_pool(server.url)

    reply = post_ok(pool)
    assert (reply.status, reply.body) == (status, b'{"error": {}}')
    assert post_ok(pool).status == 200

    assert [seen.connection for seen in server.requests] == [0, 0]


@pytest.mark.parametrize(
    "status_line",
    [b"HTTP/1.1 200", b"HTTP/1.1 200 ", b"HTTP/1.1 200 All Good Here"],
    ids=["no-reason", "empty-reason", "long-reason"],
)
def test_status_line_reason_phrase_is_optional(
    server: ScriptedServer, make_pool: MakePool, status_line: bytes
) -> None:
    server.script(answer(status_line + b"\r\nContent-Length: 2\r\n\r\nok"))
    pool = make_pool(server.url)

    reply = post_ok(pool)

    assert (reply.status, reply.body) == (200, b"ok")


def test_reply_header_returns_the_first_value_or_none() -> None:
    reply = Reply(200, [("x-a", "1"), ("x-b", "2"), ("x-a", "3")], b"")

    assert reply.header("x-a") == "1"
    assert reply.header("x-b") == "2"
    assert reply.header("x-missing") is None


def test_reply_header_finds_repeated_wire_headers_by_lowercase_name(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    server.script(
        answer(response(200, b"", headers=[("Set-Thing", "first"), ("SET-THING", "second")]))
    )
    pool = make_pool(server.url)

    reply = post_ok(pool)

    assert reply.header("set-thing") == "first"
    assert [v for k, v in reply.headers if k == "set-thing"] == ["first", "second"]
    assert reply.header("Set-Thing") is None  # names are lower-case


# -- keep-alive --------------------------------------------------------------------------


def test_two_posts_in_a_row_reuse_one_connection(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    pool = make_pool(server.url)

    first = pool.post("/one", b"a", {})
    second = pool.post("/two", b"b", {})

    assert (first.body, second.body) == (b"/one|a", b"/two|b")
    assert [(seen.path, seen.connection) for seen in server.requests] == [
        ("/one", 0),
        ("/two", 0),
    ]
    assert pool.opened == 1
    assert server.connections == 1


@pytest.mark.parametrize(
    ("action", "body"),
    [
        pytest.param(
            answer(response(200, b"bye", headers=[("Connection", "close")])),
            b"bye",
            id="connection-close",
        ),
        pytest.param(
            answer(response(200, b"bye", headers=[("Connection", "Keep-Alive, CLOSE")])),
            b"bye",
            id="close-token-in-a-list",
        ),
        pytest.param(answer(response(200, b"old", version="HTTP/1.0")), b"old", id="http10"),
        pytest.param(
            in_pieces(
                response(200, version="HTTP/1.0", length=False), b"old ", b"school", close=True
            ),
            b"old school",
            id="http10-framed-by-close",
        ),
        pytest.param(
            in_pieces(response(200, length=False), b"part one, ", b"part two", close=True),
            b"part one, part two",
            id="framed-by-close",
        ),
        pytest.param(
            answer_then_close(response(200, length=False)), b"", id="empty-framed-by-close"
        ),
        pytest.param(
            in_pieces(
                response(200, headers=[("Transfer-Encoding", "gzip")], length=False),
                b"\x1f\x8b\x08",
                b"\x00\x00",
                close=True,
            ),
            b"\x1f\x8b\x08\x00\x00",
            id="transfer-encoding-not-chunked",
        ),
    ],
)
def test_answer_that_ends_the_connection_is_read_fully_and_the_next_post_reconnects(
    server: ScriptedServer, make_pool: MakePool, action: Action, body: bytes
) -> None:
    server.script(action, answer(OK))
    pool = make_pool(server.url)

    reply = post_ok(pool)
    assert (reply.status, reply.body) == (200, body)
    # The client dropped the connection (where the server kept it open too).
    assert server.wait_closed(0)

    assert post_ok(pool).body == b'{"ok": true}'
    assert [seen.connection for seen in server.requests] == [0, 1]
    assert pool.opened == 2


def test_kept_connection_the_server_closed_while_idle_is_not_used(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    # Closed after answering, without "Connection: close": the client keeps it.
    server.script(answer_then_close(OK), answer(OK))
    pool = make_pool(server.url, idle_check_after=0)
    assert post_ok(pool).status == 200
    assert len(idle_sockets(pool)) == 1
    assert server.wait_closed(0)
    wait_until_idle_connections_are_readable(pool)

    reply = post_ok(pool)

    assert (reply.status, reply.body) == (200, b'{"ok": true}')
    assert [seen.connection for seen in server.requests] == [0, 1]
    assert pool.opened == 2


def test_a_connection_back_within_idle_check_after_is_used_without_a_check(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    # The trade: no select() (and no GIL handover) per request on a busy
    # connection. A server that closed it that fast makes the next post fail
    # with a TransportError, which the exporter retries; once idle long
    # enough, the check applies again.
    server.script(answer_then_close(OK), answer(OK))
    pool = make_pool(server.url, idle_check_after=60)
    assert post_ok(pool).status == 200
    assert server.wait_closed(0)
    wait_until_idle_connections_are_readable(pool)

    with pytest.raises(TransportError):
        post_ok(pool)
    assert pool.post("/", b"{}", {}).status == 200  # a fresh connection
    assert pool.opened == 2


def test_stray_bytes_after_an_answer_make_the_connection_unreusable(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    server.script(answer(OK + b"HTTP/1.1 200 OK\r\n"), answer(OK))
    pool = make_pool(server.url)

    assert post_ok(pool).body == b'{"ok": true}'
    assert post_ok(pool).body == b'{"ok": true}'

    assert [seen.connection for seen in server.requests] == [0, 1]
    assert pool.opened == 2


def test_bytes_arriving_on_an_idle_connection_make_it_unreusable(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    server.script(in_pieces(OK, b"late garbage"), answer(OK))
    pool = make_pool(server.url, idle_check_after=0)
    assert post_ok(pool).status == 200
    wait_until_idle_connections_are_readable(pool)  # readable: the late bytes are there

    assert post_ok(pool).status == 200

    assert [seen.connection for seen in server.requests] == [0, 1]


def keep_two_idle_connections(
    server: ScriptedServer, pool: Http11Pool, first: Action, second: Action
) -> None:
    """Leave two kept connections: 1 (answered by *second*, returned first), then 0."""
    gate = threading.Event()
    server.script(gated(gate, first), second)
    errors: list[BaseException] = []

    def held_post() -> None:
        try:
            assert post_ok(pool).status == 200
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=held_post)
    thread.start()
    try:
        server.wait_for_requests(1)
        assert post_ok(pool).status == 200  # connection 0 is busy: a second one is opened
    finally:
        gate.set()
        thread.join(5)
    assert errors == []
    assert [seen.connection for seen in server.requests] == [0, 1]
    assert len(idle_sockets(pool)) == 2


def test_the_most_recently_returned_connection_is_reused_first(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    pool = make_pool(server.url)
    keep_two_idle_connections(server, pool, answer(OK), answer(OK))

    assert post_ok(pool).status == 200

    assert server.requests[-1].connection == 0
    assert pool.opened == 2


def test_every_stale_kept_connection_is_skipped_before_opening_a_new_one(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    pool = make_pool(server.url, idle_check_after=0)
    keep_two_idle_connections(server, pool, answer_then_close(OK), answer_then_close(OK))
    assert server.wait_closed(0)
    assert server.wait_closed(1)
    wait_until_idle_connections_are_readable(pool)

    assert pool.post("/third", b"3", {}).body == b"/third|3"

    assert server.requests[-1].connection == 2
    assert pool.opened == 3
    assert len(idle_sockets(pool)) == 1


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_answers_have_no_body_and_keep_the_connection(
    server: ScriptedServer, make_pool: MakePool, status: int
) -> None:
    server.script(answer(response(status, length=False)), answer(OK))
    pool = make_pool(server.url)

    reply = post_ok(pool)
    assert (reply.status, reply.body) == (status, b"")
    assert post_ok(pool).body == b'{"ok": true}'

    assert [seen.connection for seen in server.requests] == [0, 0]
    assert pool.opened == 1


def test_identical_duplicate_content_length_values_are_accepted(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length:  2 \r\n\r\nok"
    server.script(answer(raw), answer(OK))
    pool = make_pool(server.url)

    assert post_ok(pool).body == b"ok"
    assert post_ok(pool).status == 200
    assert [seen.connection for seen in server.requests] == [0, 0]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_of_exactly_one_mib_is_accepted(
    server: ScriptedServer, make_pool: MakePool, framing: str
) -> None:
    body = bytes(range(256)) * (MAX_BODY // 256)
    if framing == "chunked":
        raw = chunked_response(body[: MAX_BODY // 2], body[MAX_BODY // 2 :])
    else:
        raw = response(200, body)
    server.script(answer(raw))
    pool = make_pool(server.url)

    assert post_ok(pool).body == body


# -- chunked answers ---------------------------------------------------------------------

CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        pytest.param(chunked_response(b"abc", b"defg", b"h"), b"abcdefgh", id="several-chunks"),
        pytest.param(
            CHUNKED + b'3;name=value\r\nabc\r\n2 ; x="q"\r\nde\r\n0;last\r\n\r\n',
            b"abcde",
            id="chunk-extensions",
        ),
        pytest.param(
            chunked_response(b"abc", trailers=b"X-Trailer: 1\r\nX-Checksum: abc\r\n"),
            b"abc",
            id="trailers",
        ),
        pytest.param(CHUNKED + b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", id="upper-hex"),
        pytest.param(CHUNKED + b"0000a\r\n0123456789\r\n0\r\n\r\n", b"0123456789", id="zeros"),
        pytest.param(
            b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n", b"abc", id="lf-only"
        ),
        pytest.param(CHUNKED + b"0\r\n\r\n", b"", id="empty"),
        pytest.param(
            response(200, headers=[("Transfer-Encoding", "gzip, Chunked")], length=False)
            + b"2\r\nok\r\n0\r\n\r\n",
            b"ok",
            id="chunked-last-coding",
        ),
        pytest.param(
            response(
                200,
                headers=[("Content-Length", "999"), ("Transfer-Encoding", "chunked")],
                length=False,
            )
            + b"2\r\nok\r\n0\r\n\r\n",
            b"ok",
            id="chunked-wins-over-content-length",
        ),
    ],
)
def test_chunked_answer_decodes_and_the_connection_is_reused(
    server: ScriptedServer, make_pool: MakePool, raw: bytes, body: bytes
) -> None:
    server.script(answer(raw), answer(OK))
    pool = make_pool(server.url)

    reply = post_ok(pool)
    assert (reply.status, reply.body) == (200, body)
    assert post_ok(pool).body == b'{"ok": true}'

    assert [seen.connection for seen in server.requests] == [0, 0]
    assert pool.opened == 1


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        pytest.param(response(200, b"hello world"), b"hello world", id="content-length"),
        pytest.param(
            chunked_response(b"hello", b" ", b"world", trailers=b"X-T: 1\r\n"),
            b"hello world",
            id="chunked-with-trailers",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n5;e=1\nhello\n0\n\n",
            b"hello",
            id="lf-only-chunked",
        ),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\n" + response(200, b"after"), b"after", id="interim"
        ),
    ],
)
def test_answer_split_into_one_byte_writes_parses_the_same_and_is_reused(
    server: ScriptedServer, make_pool: MakePool, raw: bytes, body: bytes
) -> None:
    server.script(byte_by_byte(raw), answer(OK))
    pool = make_pool(server.url)

    assert post_ok(pool).body == body
    assert post_ok(pool).body == b'{"ok": true}'

    assert [seen.connection for seen in server.requests] == [0, 0]


def test_chunks_split_across_writes_at_awkward_places_decode(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    server.script(
        in_pieces(
            CHUNKED + b"1",  # inside a chunk size
            b"0\r",  # between CR and LF
            b"\n0123456",  # inside the data
            b"789abcdef\r\n5;ext",  # inside an extension
            b"=1\r\nhello\r",
            b"\n0\r\nX-T",  # inside a trailer
            b"railer: 1\r\n\r",
            b"\n",
        ),
        answer(OK),
    )
    pool = make_pool(server.url)

    assert post_ok(pool).body == b"0123456789abcdefhello"
    assert post_ok(pool).status == 200
    assert [seen.connection for seen in server.requests] == [0, 0]


# -- interim answers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(answer(b"HTTP/1.1 100 Continue\r\n\r\n" + OK), id="100"),
        pytest.param(
            answer(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" + OK),
            id="103-with-headers",
        ),
        pytest.param(
            in_pieces(
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                b"HTTP/1.1 102 Processing\r\n\r\n",
                OK,
            ),
            id="several-in-separate-writes",
        ),
    ],
)
def test_interim_answers_are_skipped_for_the_final_one(
    server: ScriptedServer, make_pool: MakePool, action: Action
) -> None:
    server.script(action, answer(OK))
    pool = make_pool(server.url)

    reply = post_ok(pool)

    assert (reply.status, reply.body) == (200, b'{"ok": true}')
    assert reply.header("link") is None
    assert reply.headers == [("content-length", "12")]
    assert post_ok(pool).status == 200
    assert [seen.connection for seen in server.requests] == [0, 0]


def test_up_to_ten_interim_answers_are_skipped(server: ScriptedServer, make_pool: MakePool) -> None:
    server.script(answer(b"HTTP/1.1 103 Early Hints\r\n\r\n" * 10 + OK))
    pool = make_pool(server.url)

    assert post_ok(pool).status == 200


# -- broken answers ----------------------------------------------------------------------


def test_connection_refused_raises_transport_error(make_pool: MakePool) -> None:
    with socket.socket() as bound:  # bound, not listening: connecting is refused
        bound.bind(("127.0.0.1", 0))
        pool = make_pool(f"http://127.0.0.1:{bound.getsockname()[1]}")

        with pytest.raises(TransportError):
            post_ok(pool)


def _header_line(line: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + line + b"\r\nContent-Length: 2\r\n\r\nok"


def _content_length(*values: bytes) -> bytes:
    lines = b"".join(b"Content-Length: " + value + b"\r\n" for value in values)
    return b"HTTP/1.1 200 OK\r\n" + lines + b"\r\nok"


BIG = MAX_BODY // 2

BROKEN_ANSWERS = [
    pytest.param(close_without_answer(), id="closed-before-answering"),
    pytest.param(reset(), id="reset"),
    pytest.param(answer_then_close(b"HTTP/1.1 200 OK\r\nContent-Le"), id="truncated-head"),
    pytest.param(
        answer_then_close(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial'),
        id="truncated-body",
    ),
    pytest.param(answer_then_close(b"HELLO"), id="garbage-then-close"),
    pytest.param(answer(b"HELLO\r\n\r\n"), id="garbage-status-line"),
    pytest.param(answer(b"HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n"), id="http2-status"),
    pytest.param(answer(b"http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), id="lowercase-http"),
    pytest.param(answer(b"ICY 200 OK\r\nContent-Length: 0\r\n\r\n"), id="icy-status"),
    pytest.param(answer(b"HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n"), id="two-digit-code"),
    pytest.param(answer(b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"), id="four-digit"),
    pytest.param(answer(b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n"), id="letters-code"),
    pytest.param(answer(b"\r\n\r\n"), id="empty-head"),
    pytest.param(answer(_header_line(b"NoColonHere")), id="header-without-colon"),
    pytest.param(answer(_header_line(b"X-A: 1\r\n  folded")), id="obs-fold"),
    pytest.param(answer(_header_line(b"Bad Name: x")), id="space-in-name"),
    pytest.param(answer(_header_line(b"X-A : x")), id="space-before-colon"),
    pytest.param(answer(_header_line(b": no name")), id="empty-name"),
    pytest.param(answer(_header_line(b"X-\x01: ctl")), id="control-in-name"),
    pytest.param(answer(_content_length(b"2", b"3")), id="conflicting-content-lengths"),
    pytest.param(answer(_content_length(b"abc")), id="content-length-letters"),
    pytest.param(answer(_content_length(b"-1")), id="content-length-negative"),
    pytest.param(answer(_content_length(b"+2")), id="content-length-plus"),
    pytest.param(answer(_content_length(b"0x2")), id="content-length-hex"),
    pytest.param(answer(_content_length(b"2 2")), id="content-length-two-numbers"),
    pytest.param(answer(_content_length(b"1_0")), id="content-length-underscore"),
    pytest.param(answer(CHUNKED + b"zz\r\nok\r\n0\r\n\r\n"), id="chunk-size-not-hex"),
    pytest.param(answer(CHUNKED + b"-1\r\nok\r\n0\r\n\r\n"), id="chunk-size-negative"),
    pytest.param(answer(CHUNKED + b"0x2\r\nok\r\n0\r\n\r\n"), id="chunk-size-0x"),
    pytest.param(answer(CHUNKED + b"1_0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n"), id="chunk-size-_"),
    pytest.param(answer(CHUNKED + b"\r\nok\r\n0\r\n\r\n"), id="chunk-size-empty"),
    pytest.param(answer(CHUNKED + b" ;ext\r\nok\r\n0\r\n\r\n"), id="chunk-size-blank"),
    pytest.param(answer(CHUNKED + b"1" * 17 + b"\r\n"), id="chunk-size-17-digits"),
    pytest.param(answer(CHUNKED + b"a" * 5000), id="chunk-line-too-long"),
    pytest.param(answer(CHUNKED + b"3\r\nabcdef\r\n0\r\n\r\n"), id="chunk-longer-than-size"),
    pytest.param(answer_then_close(CHUNKED + b"5\r\nabc"), id="closed-inside-a-chunk"),
    pytest.param(answer_then_close(CHUNKED + b"3\r\nabc\r\n"), id="closed-before-last-chunk"),
    pytest.param(answer_then_close(CHUNKED + b"0\r\nX-T: 1\r\n"), id="closed-inside-the-trailers"),
    pytest.param(
        answer(padded_head(200 * 1024) + b"\r\nContent-Length: 2\r\n\r\nok"), id="head-200kib"
    ),
    pytest.param(answer(padded_head(100 * 1024)), id="head-100kib-unterminated"),
    pytest.param(
        answer(response(200, length=False)[:-2] + b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1)),
        id="content-length-over-1mib",
    ),
    pytest.param(
        answer(chunked_response(b"a" * BIG, b"b" * BIG, b"c")), id="chunked-body-over-1mib"
    ),
    pytest.param(
        answer_then_close(response(200, length=False) + b"x" * (MAX_BODY + 1)),
        id="body-framed-by-close-over-1mib",
    ),
    pytest.param(answer(b"HTTP/1.1 100 Continue\r\n\r\n" * 11 + OK), id="eleven-interim"),
    pytest.param(
        answer(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n" + OK),
        id="switching-protocols",
    ),
]


@pytest.mark.parametrize("action", BROKEN_ANSWERS)
def test_broken_answer_raises_transport_error_promptly_and_the_next_post_reconnects(
    server: ScriptedServer, make_pool: MakePool, action: Action
) -> None:
    server.script(action, answer(OK))
    pool = make_pool(server.url, timeout=3.0)

    started = time.monotonic()
    with pytest.raises(TransportError):
        post_ok(pool)
    # Refused by a check, not by the deadline.
    assert time.monotonic() - started < 2.0

    assert post_ok(pool).body == b'{"ok": true}'
    assert [seen.connection for seen in server.requests] == [0, 1]
    assert pool.opened == 2


@pytest.mark.parametrize("value", [b"", b"\xb2"], ids=["empty", "superscript-two"])
def test_empty_or_non_ascii_digit_content_length_raises_transport_error(
    server: ScriptedServer, make_pool: MakePool, value: bytes
) -> None:
    server.script(answer(_content_length(value)))
    pool = make_pool(server.url)

    with pytest.raises(TransportError):
        post_ok(pool)


def test_head_just_over_64_kib_is_refused(server: ScriptedServer, make_pool: MakePool) -> None:
    # 64 KiB of head in one write (not yet too large), the rest of it in a second write.
    server.script(
        in_pieces(padded_head(MAX_HEAD), b"X-Last: 1\r\nContent-Length: 2\r\n\r\nok", pause=0.05)
    )
    pool = make_pool(server.url)

    with pytest.raises(TransportError):
        post_ok(pool)


# -- deadlines ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "piece"),
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a", id="inside-the-head"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", b".", id="body"),
        pytest.param(CHUNKED, b"1\r\n.\r\n", id="one-byte-chunks"),
    ],
)
def test_server_dripping_bytes_cannot_hold_a_post_past_its_deadline(
    server: ScriptedServer, make_pool: MakePool, prefix: bytes, piece: bytes
) -> None:
    server.script(drip(prefix, piece, interval=0.05))
    pool = make_pool(server.url, timeout=0.5, connect_timeout=0.5)

    started = time.monotonic()
    with pytest.raises(TransportError):
        post_ok(pool)
    elapsed = time.monotonic() - started

    assert 0.45 <= elapsed < 2.0


def test_server_that_never_answers_times_out(server: ScriptedServer, make_pool: MakePool) -> None:
    server.script(hang())
    pool = make_pool(server.url, timeout=0.5, connect_timeout=0.5)

    started = time.monotonic()
    with pytest.raises(TransportError):
        post_ok(pool)
    elapsed = time.monotonic() - started

    assert 0.45 <= elapsed < 2.0
    assert len(server.requests) == 1


# -- close() -----------------------------------------------------------------------------


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


def test_close_from_another_thread_aborts_a_post_waiting_for_its_answer(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    server.script(hang())
    pool = make_pool(server.url, timeout=5.0)
    running = PostInThread(pool)
    try:
        server.wait_for_requests(1)  # the post is now waiting for its answer
        closed_at = time.monotonic()
        pool.close()
        assert running.finished.wait(2.0), "close() did not abort the post"
    finally:
        running.thread.join(5)

    assert len(running.outcome) == 1
    assert isinstance(running.outcome[0], TransportError)
    assert running.finished_at - closed_at < 1.0


def test_post_after_close_raises_at_once_and_opens_nothing(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    pool = make_pool(server.url)
    assert post_ok(pool).status == 200
    pool.close()

    started = time.monotonic()
    with pytest.raises(TransportError):
        post_ok(pool)

    assert time.monotonic() - started < 0.5
    assert pool.opened == 1
    assert server.connections == 1
    assert len(server.requests) == 1


def test_close_closes_kept_connections_and_can_be_called_twice(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    pool = make_pool(server.url)
    assert post_ok(pool).status == 200
    assert server.open_connections == 1

    pool.close()
    pool.close()

    assert server.wait_closed(0)
    assert server.open_connections == 0


# -- header injection --------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"X-A": "a\r\nX-Injected: 1"},
        {"X-A": "a\nX-Injected: 1"},
        {"X-A": "a\rX-Injected: 1"},
        {"X-A\r\nX-Injected": "1"},
        {"X-A": "ok", "X-B": "b\r\n\r\nGET / HTTP/1.1"},
    ],
    ids=["crlf-in-value", "lf-in-value", "cr-in-value", "crlf-in-name", "smuggled-request"],
)
def test_line_break_in_a_header_raises_value_error_and_sends_nothing(
    server: ScriptedServer, make_pool: MakePool, headers: dict[str, str]
) -> None:
    pool = make_pool(server.url)
    with pytest.raises(ValueError):
        pool.post("/bad", b"x", headers)
    assert pool.opened == 0

    # On a kept connection too: nothing of the refused request reaches the server.
    assert pool.post("/first", b"1", {}).body == b"/first|1"
    with pytest.raises(ValueError):
        pool.post("/bad", b"x", headers)
    assert pool.post("/second", b"2", {}).body == b"/second|2"

    requests = server.requests
    assert [(seen.path, seen.connection) for seen in requests] == [("/first", 0), ("/second", 0)]
    assert not [seen for seen in requests if seen.header("X-Injected") is not None]
    assert pool.opened == 1


@pytest.mark.parametrize(
    "path",
    ["/a\r\nX-Injected: 1", "/a b", "relative", "/a\x00"],
    ids=["crlf", "space", "relative", "nul"],
)
def test_a_path_that_is_not_a_request_path_raises_value_error_and_sends_nothing(
    server: ScriptedServer, make_pool: MakePool, path: str
) -> None:
    pool = make_pool(server.url)
    with pytest.raises(ValueError, match="not a request path"):
        pool.post(path, b"x", {})
    assert pool.opened == 0
    assert server.requests == []


# -- threads -----------------------------------------------------------------------------


def test_concurrent_posts_get_their_own_answers_and_at_most_max_idle_connections_are_kept(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    threads, posts, max_idle = 8, 25, 2
    pool = make_pool(server.url, max_idle=max_idle)
    errors: list[BaseException] = []
    idle_counts: list[int] = []
    start = threading.Event()

    def worker(number: int) -> None:
        try:
            start.wait(5)
            for n in range(posts):
                body = f"thread {number} post {n}".encode()
                chunked = "1" if (number + n) % 2 else "0"
                reply = pool.post(f"/echo/{number}/{n}", body, {"X-Chunked": chunked})
                assert (reply.status, reply.body) == (200, f"/echo/{number}/{n}|".encode() + body)
                idle_counts.append(len(idle_sockets(pool)))
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    start.set()
    for thread in workers:
        thread.join(10)
    assert not [thread for thread in workers if thread.is_alive()]

    assert errors == []
    requests = server.requests
    assert len(requests) == threads * posts
    assert sorted(seen.path for seen in requests) == sorted(
        f"/echo/{i}/{n}" for i in range(threads) for n in range(posts)
    )
    assert max(idle_counts) <= max_idle
    assert pool.opened == server.connections
    # Connections beyond max_idle were closed by the client; the kept ones stay open.
    assert server.wait_for_open_at_most(max_idle)
    assert 1 <= server.open_connections == len(idle_sockets(pool)) <= max_idle
    pool.close()
    assert server.wait_for_open_at_most(0)


# -- TLS ---------------------------------------------------------------------------------


def test_tls_post_verifies_the_server_and_reuses_the_connection(
    make_server: MakeServer,
    make_pool: MakePool,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
) -> None:
    server = make_server(tls=server_tls)
    pool = make_pool(server.url, ssl_context=client_tls)

    first = pool.post("/one", b"a", {"Content-Type": "text/plain"})
    second = pool.post("/two", b"b", {"X-Chunked": "1"})

    assert (first.status, first.body) == (200, b"/one|a")
    assert (second.status, second.body) == (200, b"/two|b")
    assert [seen.connection for seen in server.requests] == [0, 0]
    assert server.requests[0].all("Host") == [f"localhost:{server.port}"]
    assert pool.opened == 1


def test_tls_with_the_default_context_refuses_an_untrusted_certificate(
    make_server: MakeServer, make_pool: MakePool, server_tls: ssl.SSLContext
) -> None:
    server = make_server(tls=server_tls)
    pool = make_pool(server.url)  # certifi's roots: the test CA is not among them

    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        post_ok(pool)

    assert wait_for(lambda: len(server.tls_errors) == 1)
    assert server.requests == []


def test_tls_refuses_a_certificate_for_another_host(
    make_server: MakeServer, make_pool: MakePool, ca: trustme.CA, client_tls: ssl.SSLContext
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("other.example").configure_cert(context)
    server = make_server(tls=context)
    pool = make_pool(server.url, ssl_context=client_tls)

    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        post_ok(pool)

    assert server.requests == []


def test_tls_kept_connection_the_server_closed_while_idle_is_not_used(
    make_server: MakeServer,
    make_pool: MakePool,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
) -> None:
    server = make_server(tls=server_tls)
    server.script(answer_then_close(OK), answer(OK))
    pool = make_pool(server.url, ssl_context=client_tls, idle_check_after=0)
    assert post_ok(pool).status == 200
    assert len(idle_sockets(pool)) == 1
    assert server.wait_closed(0)
    wait_until_idle_connections_are_readable(pool)

    assert post_ok(pool).body == b'{"ok": true}'

    assert [seen.connection for seen in server.requests] == [0, 1]
    assert pool.opened == 2


class SilentListener:
    """Accepts one TCP connection, reads the TLS ClientHello, and never answers."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self._listener.settimeout(5.0)
        self.port: int = self._listener.getsockname()[1]
        self.hello = threading.Event()
        self._conn: Optional[socket.socket] = None
        self._thread = threading.Thread(target=self._run, name="http11-test-silent")
        self._thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        self._conn = conn
        conn.settimeout(5.0)
        try:
            if conn.recv(1):
                self.hello.set()
        except OSError:
            pass

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._thread.join(5)
        assert not self._thread.is_alive()
        if self._conn is not None:
            self._conn.close()


@pytest.fixture
def silent_listener() -> Iterator[SilentListener]:
    listener = SilentListener()
    yield listener
    listener.close()


def test_tls_handshake_that_never_completes_times_out(
    silent_listener: SilentListener, make_pool: MakePool, client_tls: ssl.SSLContext
) -> None:
    pool = make_pool(
        f"https://localhost:{silent_listener.port}",
        timeout=5.0,
        connect_timeout=0.4,
        ssl_context=client_tls,
    )

    started = time.monotonic()
    with pytest.raises(TransportError):
        post_ok(pool)
    elapsed = time.monotonic() - started

    assert silent_listener.hello.is_set()
    assert 0.35 <= elapsed < 2.0  # bounded by connect_timeout, not by timeout


def test_close_aborts_a_post_stuck_in_the_tls_handshake(
    silent_listener: SilentListener, make_pool: MakePool, client_tls: ssl.SSLContext
) -> None:
    pool = make_pool(
        f"https://localhost:{silent_listener.port}",
        timeout=1.0,
        connect_timeout=1.0,
        ssl_context=client_tls,
    )
    running = PostInThread(pool)
    try:
        assert silent_listener.hello.wait(5)  # the client is waiting for the ServerHello
        closed_at = time.monotonic()
        pool.close()
        assert running.finished.wait(5)
    finally:
        running.thread.join(5)

    assert isinstance(running.outcome[0], TransportError)
    assert running.finished_at - closed_at < 0.3
