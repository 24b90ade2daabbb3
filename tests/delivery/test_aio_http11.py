"""The asyncio HTTP/1.1 client (``_exporters/_aio.py``) against the scripted raw-socket server.

The server, its scripted actions, the fixtures and the broken answers all come
from ``test_http11.py``: ``AsyncHttp11`` must accept what ``Http11Pool``
accepts and refuse, as a :class:`TransportError`, what it refuses. Each test
is a plain function that runs its scenario with ``asyncio.run``; the client is
closed on the loop before the loop ends. Waits on the server's threads run in
a worker thread (``asyncio.to_thread``) so the loop keeps reading meanwhile,
and waits for the loop to notice something are polls with a deadline.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading
import time
from collections.abc import Awaitable
from typing import Callable, TypeVar

import pytest
import trustme

from meterstream._exporters._aio import AsyncHttp11
from meterstream._exporters._http11 import MAX_BODY, MAX_HEAD, Http11Pool, Reply, TransportError

from . import test_http11 as sync_tests
from .test_http11 import (
    BROKEN_ANSWERS,
    CHUNKED,
    OK,
    STREAM_PATH,
    Action,
    Handle,
    MakePool,
    MakeServer,
    ScriptedServer,
    Seen,
    SilentListener,
    answer,
    answer_then_close,
    byte_by_byte,
    chunked_response,
    drip,
    gated,
    hang,
    in_pieces,
    padded_head,
    response,
)

# The sync tests' fixtures, bound here under their own names so that pytest finds them.
ca = sync_tests.ca
client_tls = sync_tests.client_tls
make_pool = sync_tests.make_pool
make_server = sync_tests.make_server
server = sync_tests.server
server_tls = sync_tests.server_tls
silent_listener = sync_tests.silent_listener

T = TypeVar("T")
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


# -- helpers -----------------------------------------------------------------------------


def run(pool: Http11Pool, scenario: Callable[[AsyncHttp11], Awaitable[T]]) -> T:
    """Run *scenario* with an ``AsyncHttp11`` on *pool* in a new event loop; close it there."""

    async def main() -> T:
        http = AsyncHttp11(pool)
        try:
            return await scenario(http)
        finally:
            http.close()
            await asyncio.sleep(0)  # the aborted transports close their sockets

    return asyncio.run(main())


async def post_ok(http: AsyncHttp11, body: bytes = b"{}") -> Reply:
    return await http.post(STREAM_PATH, body, {"Content-Type": "application/json"})


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll *predicate* on the loop until it holds or *timeout* passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.002)
    return predicate()


def idle_streams(http: AsyncHttp11) -> list[Stream]:
    """White box: the client's kept connections."""
    return list(http._idle)


async def server_closed(server: ScriptedServer, number: int) -> bool:
    """Wait (off the loop, which keeps running) until the server's connection *number* closed."""
    return await asyncio.to_thread(server.wait_closed, number)


def close_when(gate: threading.Event, raw: bytes, *, reset: bool = False) -> Action:
    """Send *raw*, then close once *gate* is set (5 s at most): with a RST if *reset*.

    The connection is still open when the client has its answer, so the client
    keeps it; the test then lets the server close it while it is idle.
    """

    def act(handle: Handle, seen: Seen) -> bool:
        handle.sock.sendall(raw)
        gate.wait(5.0)
        if reset:
            handle.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    return act


def connections(server: ScriptedServer) -> list[int]:
    return [seen.connection for seen in server.requests]


# -- a plain answer ----------------------------------------------------------------------


def test_post_returns_status_lowercase_headers_and_body(
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
    pool = make_pool(server.url, timeout=2.0)
    body = b'{"events": [1]}\r\n\r\n' + bytes(range(256))
    sent = {"Authorization": "Bearer tok_1", "Idempotency-Key": "meterstream-b1"}

    async def scenario(http: AsyncHttp11) -> Reply:
        return await http.post(STREAM_PATH, body, sent)

    reply = run(pool, scenario)

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
    assert seen.headers == [
        ("Host", f"127.0.0.1:{server.port}"),
        *sent.items(),
        ("Content-Length", str(len(body))),
    ]
    assert seen.body == body


def test_the_request_on_the_wire_is_the_one_the_sync_client_sends(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    pool = make_pool(server.url, timeout=2.0)
    body = b'{"events": [{"x": 1}]}\r\n' + bytes(range(256))
    sent = {
        "Authorization": "Bearer tok_1",
        "Idempotency-Key": "meterstream-b7",
        "Content-Type": "application/json",
        "Stripe-Version": "2025-01-01",
    }
    assert pool.post(STREAM_PATH, body, sent).status == 200

    async def scenario(http: AsyncHttp11) -> Reply:
        return await http.post(STREAM_PATH, body, sent)

    assert run(pool, scenario).status == 200

    sync, aio = server.requests
    assert (sync.connection, aio.connection) == (0, 1)
    assert (aio.method, aio.path, aio.version, aio.headers, aio.body) == (
        sync.method,
        sync.path,
        sync.version,
        sync.headers,
        sync.body,
    )
    assert aio.all("Content-Length") == [str(len(body))]


def test_empty_body_is_sent_with_content_length_zero(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    server.script(answer(OK))
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> Reply:
        return await http.post("/empty", b"", {})

    assert run(pool, scenario).status == 200
    (seen,) = server.requests
    assert seen.all("Content-Length") == ["0"]
    assert seen.body == b""


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/bad", {"X-A": "a\r\nX-Injected: 1"}),
        ("/bad", {"X-A\r\nX-Injected": "1"}),
        ("/a\r\nX-Injected: 1", {}),
        ("relative", {}),
    ],
    ids=["crlf-in-value", "crlf-in-name", "crlf-in-path", "relative-path"],
)
def test_a_line_break_or_a_bad_path_raises_value_error_and_sends_nothing(
    server: ScriptedServer, make_pool: MakePool, path: str, headers: dict[str, str]
) -> None:
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> int:
        with pytest.raises(ValueError):
            await http.post(path, b"x", headers)
        return http.opened

    assert run(pool, scenario) == 0
    assert server.connections == 0


@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
def test_error_statuses_are_replies_not_errors_and_keep_the_connection(
    server: ScriptedServer, make_pool: MakePool, status: int
) -> None:
    server.script(answer(response(status, b'{"error": {}}')), answer(OK))
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> list[Reply]:
        return [await post_ok(http), await post_ok(http)]

    first, second = run(pool, scenario)

    assert (first.status, first.body) == (status, b'{"error": {}}')
    assert (second.status, second.body) == (200, b'{"ok": true}')
    assert connections(server) == [0, 0]


@pytest.mark.parametrize(
    "status_line",
    [b"HTTP/1.1 200", b"HTTP/1.1 200 ", b"HTTP/1.1 200 All Good Here"],
    ids=["no-reason", "empty-reason", "long-reason"],
)
def test_status_line_reason_phrase_is_optional(
    server: ScriptedServer, make_pool: MakePool, status_line: bytes
) -> None:
    server.script(answer(status_line + b"\r\nContent-Length: 2\r\n\r\nok"))
    pool = make_pool(server.url, timeout=2.0)

    reply = run(pool, post_ok)

    assert (reply.status, reply.body) == (200, b"ok")


# -- keep-alive --------------------------------------------------------------------------


def test_two_posts_in_a_row_reuse_one_connection(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> tuple[bytes, bytes, int, int]:
        first = await http.post("/one", b"a", {})
        second = await http.post("/two", b"b", {})
        return first.body, second.body, http.opened, len(idle_streams(http))

    first, second, opened, kept = run(pool, scenario)

    assert (first, second) == (b"/one|a", b"/two|b")
    assert [(seen.path, seen.connection) for seen in server.requests] == [("/one", 0), ("/two", 0)]
    assert (opened, kept) == (1, 1)
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
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> tuple[Reply, Reply, int]:
        first = await post_ok(http)
        assert idle_streams(http) == []
        # The client dropped the connection (where the server kept it open too).
        assert await server_closed(server, 0)
        second = await post_ok(http)
        return first, second, http.opened

    first, second, opened = run(pool, scenario)

    assert (first.status, first.body) == (200, body)
    assert second.body == b'{"ok": true}'
    assert connections(server) == [0, 1]
    assert opened == 2


def closed_by_the_server(stream: Stream) -> bool:
    """Whether the loop has seen the server's FIN (or RST) on *stream*."""
    reader, writer = stream
    return reader.at_eof() or writer.is_closing() or reader.exception() is not None


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "reset"])
def test_kept_connection_the_server_closed_while_idle_is_replaced(
    server: ScriptedServer, make_pool: MakePool, reset: bool
) -> None:
    # Closed while idle, without "Connection: close" on the answer: the client kept it.
    gate = threading.Event()
    server.script(close_when(gate, OK, reset=reset), answer(OK))
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> tuple[Reply, int]:
        assert (await post_ok(http)).status == 200
        (stream,) = idle_streams(http)
        gate.set()
        assert await server_closed(server, 0)
        # The loop has read the FIN (or the RST) by the time the client is used again.
        assert await until(lambda: closed_by_the_server(stream))

        reply = await post_ok(http)
        return reply, http.opened

    try:
        reply, opened = run(pool, scenario)
    finally:
        gate.set()

    assert (reply.status, reply.body) == (200, b'{"ok": true}')
    assert connections(server) == [0, 1]
    assert opened == 2


def test_at_most_max_idle_connections_are_kept(server: ScriptedServer, make_pool: MakePool) -> None:
    gate = threading.Event()
    server.script(*(gated(gate, answer(OK)) for _ in range(4)))
    pool = make_pool(server.url, timeout=2.0, max_idle=2)

    async def scenario(http: AsyncHttp11) -> tuple[list[Reply], int, int]:
        posts = asyncio.gather(*(post_ok(http) for _ in range(4)))
        # All four are waiting for their answers, each on its own connection.
        await asyncio.to_thread(server.wait_for_requests, 4)
        gate.set()
        replies = await posts
        return replies, http.opened, len(idle_streams(http))

    try:
        replies, opened, kept = run(pool, scenario)
    finally:
        gate.set()

    assert [reply.status for reply in replies] == [200] * 4
    assert sorted(connections(server)) == [0, 1, 2, 3]
    assert (opened, kept) == (4, 2)
    assert server.wait_for_open_at_most(0)  # the two kept ones were closed with the client


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_answers_have_no_body_and_keep_the_connection(
    server: ScriptedServer, make_pool: MakePool, status: int
) -> None:
    server.script(answer(response(status, length=False)), answer(OK))
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> tuple[Reply, Reply, int]:
        return await post_ok(http), await post_ok(http), http.opened

    first, second, opened = run(pool, scenario)

    assert (first.status, first.body) == (status, b"")
    assert second.body == b'{"ok": true}'
    assert connections(server) == [0, 0]
    assert opened == 1


def test_identical_duplicate_content_length_values_are_accepted(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length:  2 \r\n\r\nok"
    server.script(answer(raw), answer(OK))
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> tuple[Reply, Reply]:
        return await post_ok(http), await post_ok(http)

    first, second = run(pool, scenario)

    assert (first.body, second.status) == (b"ok", 200)
    assert connections(server) == [0, 0]


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
    pool = make_pool(server.url, timeout=2.0)

    assert run(pool, post_ok).body == body


def test_a_head_of_exactly_64_kib_is_accepted(server: ScriptedServer, make_pool: MakePool) -> None:
    head = padded_head(MAX_HEAD - len(b"Content-Length: 2\r\n")) + b"Content-Length: 2\r\n"
    assert len(head) == MAX_HEAD
    server.script(answer(head + b"\r\nok"))
    pool = make_pool(server.url, timeout=2.0)

    assert run(pool, post_ok).body == b"ok"


# -- stray bytes after an answer ---------------------------------------------------------


def test_stray_bytes_after_an_answer_make_the_connection_unreusable(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    server.script(answer(OK + b"HTTP/1.1 200 OK\r\n"), answer(OK))
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> tuple[Reply, Reply]:
        return await post_ok(http), await post_ok(http)

    first, second = run(pool, scenario)

    assert (first.body, second.body) == (b'{"ok": true}', b'{"ok": true}')
    assert connections(server) == [0, 1]


def test_a_second_answer_after_the_first_is_not_taken_for_the_next_posts_answer(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    server.script(answer(OK + response(500, b"stale")))  # then the echo
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> tuple[Reply, Reply]:
        return await http.post("/one", b"a", {}), await http.post("/two", b"b", {})

    first, second = run(pool, scenario)

    assert first.body == b'{"ok": true}'
    assert (second.status, second.body) == (200, b"/two|b")


def buffered(reader: asyncio.StreamReader) -> int:
    """White box: bytes the loop has read on *reader* that no one has consumed yet."""
    return len(vars(reader)["_buffer"])


def test_bytes_arriving_on_an_idle_connection_make_it_unreusable(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    server.script(in_pieces(OK, b"late garbage"), answer(OK))
    pool = make_pool(server.url, timeout=2.0, idle_check_after=0)

    async def scenario(http: AsyncHttp11) -> Reply:
        assert (await post_ok(http)).status == 200
        ((reader, _),) = idle_streams(http)
        assert await until(lambda: buffered(reader) == len(b"late garbage"))
        return await post_ok(http)

    assert run(pool, scenario).status == 200
    assert connections(server) == [0, 1]


# -- chunked answers ---------------------------------------------------------------------


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
        pytest.param(
            CHUNKED + b"3;ext=1\r\nabc\r\n0;last\r\nX-Trailer: 1\r\n\r\n",
            b"abc",
            id="extensions-and-trailers",
        ),
        pytest.param(CHUNKED + b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", id="upper-hex"),
        pytest.param(CHUNKED + b"0000a\r\n0123456789\r\n0\r\n\r\n", b"0123456789", id="zeros"),
        pytest.param(CHUNKED + b"3\nabc\n0\n\n", b"abc", id="lf-only-chunk-lines"),
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
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> tuple[Reply, Reply, int]:
        return await post_ok(http), await post_ok(http), http.opened

    first, second, opened = run(pool, scenario)

    assert (first.status, first.body) == (200, body)
    assert second.body == b'{"ok": true}'
    assert connections(server) == [0, 0]
    assert opened == 1


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
            b"HTTP/1.1 100 Continue\r\n\r\n" + response(200, b"after"), b"after", id="interim"
        ),
    ],
)
def test_answer_split_into_one_byte_writes_parses_the_same_and_is_reused(
    server: ScriptedServer, make_pool: MakePool, raw: bytes, body: bytes
) -> None:
    server.script(byte_by_byte(raw), answer(OK))
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> tuple[Reply, Reply]:
        return await post_ok(http), await post_ok(http)

    first, second = run(pool, scenario)

    assert (first.body, second.body) == (body, b'{"ok": true}')
    assert connections(server) == [0, 0]


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
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> tuple[Reply, Reply]:
        return await post_ok(http), await post_ok(http)

    first, second = run(pool, scenario)

    assert (first.body, second.status) == (b"0123456789abcdefhello", 200)
    assert connections(server) == [0, 0]


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
        pytest.param(answer(b"HTTP/1.1 103 Early Hints\r\n\r\n" * 10 + OK), id="ten"),
    ],
)
def test_interim_answers_are_skipped_for_the_final_one(
    server: ScriptedServer, make_pool: MakePool, action: Action
) -> None:
    server.script(action, answer(OK))
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> tuple[Reply, Reply]:
        return await post_ok(http), await post_ok(http)

    reply, second = run(pool, scenario)

    assert (reply.status, reply.body) == (200, b'{"ok": true}')
    assert reply.headers == [("content-length", "12")]
    assert second.status == 200
    assert connections(server) == [0, 0]


# -- broken answers ----------------------------------------------------------------------


def test_connection_refused_raises_transport_error(make_pool: MakePool) -> None:
    with socket.socket() as bound:  # bound, not listening: connecting is refused
        bound.bind(("127.0.0.1", 0))
        pool = make_pool(f"http://127.0.0.1:{bound.getsockname()[1]}", timeout=2.0)

        async def scenario(http: AsyncHttp11) -> int:
            with pytest.raises(TransportError):
                await post_ok(http)
            return http.opened

        assert run(pool, scenario) == 0


@pytest.mark.parametrize("action", BROKEN_ANSWERS)
def test_broken_answer_raises_transport_error_promptly_and_the_next_post_reconnects(
    server: ScriptedServer, make_pool: MakePool, action: Action
) -> None:
    server.script(action, answer(OK))
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> tuple[float, Reply, int]:
        started = time.monotonic()
        with pytest.raises(TransportError):
            await post_ok(http)
        elapsed = time.monotonic() - started
        assert idle_streams(http) == []
        return elapsed, await post_ok(http), http.opened

    elapsed, reply, opened = run(pool, scenario)

    # Refused by a check, not by the deadline.
    assert elapsed < 1.0
    assert reply.body == b'{"ok": true}'
    assert connections(server) == [0, 1]
    assert opened == 2


@pytest.mark.parametrize("value", [b"", b"\xb2"], ids=["empty", "superscript-two"])
def test_empty_or_non_ascii_digit_content_length_raises_transport_error(
    server: ScriptedServer, make_pool: MakePool, value: bytes
) -> None:
    server.script(answer(b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\nok"))
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> None:
        with pytest.raises(TransportError):
            await post_ok(http)

    run(pool, scenario)


def test_head_just_over_64_kib_is_refused(server: ScriptedServer, make_pool: MakePool) -> None:
    # 64 KiB of head in one write (not yet too large), the rest of it in a second write.
    server.script(
        in_pieces(padded_head(MAX_HEAD), b"X-Last: 1\r\nContent-Length: 2\r\n\r\nok", pause=0.05)
    )
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> float:
        started = time.monotonic()
        with pytest.raises(TransportError):
            await post_ok(http)
        return time.monotonic() - started

    assert run(pool, scenario) < 1.0


def test_a_head_of_bare_lf_lines_left_open_is_a_transport_error_by_the_deadline(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    # The known difference: the sync client accepts a head ended by LF LF; this one
    # waits for CR LF CR LF, which never comes, so the deadline refuses it.
    server.script(answer(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"), answer(OK))
    pool = make_pool(server.url, timeout=0.5, connect_timeout=0.5)

    async def scenario(http: AsyncHttp11) -> tuple[float, Reply]:
        started = time.monotonic()
        with pytest.raises(TransportError):
            await post_ok(http)
        elapsed = time.monotonic() - started
        return elapsed, await post_ok(http)

    elapsed, reply = run(pool, scenario)

    assert 0.45 <= elapsed < 2.0
    assert reply.body == b'{"ok": true}'
    assert connections(server) == [0, 1]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", id="content-length"),
        pytest.param(b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n", id="chunked"),
    ],
)
def test_a_head_of_bare_lf_lines_then_close_is_a_transport_error_at_once(
    server: ScriptedServer, make_pool: MakePool, raw: bytes
) -> None:
    server.script(answer_then_close(raw))
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> float:
        started = time.monotonic()
        with pytest.raises(TransportError):
            await post_ok(http)
        return time.monotonic() - started

    assert run(pool, scenario) < 1.0


# -- deadlines ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "piece"),
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a", id="inside-the-head"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", b".", id="body"),
        pytest.param(CHUNKED, b"1\r\n.\r\n", id="one-byte-chunks"),
        pytest.param(response(200, length=False), b".", id="body-framed-by-close"),
        pytest.param(b"", b"HTTP/1.1 100 Continue\r\n\r\n", id="interim-answers"),
    ],
)
def test_server_dripping_bytes_cannot_hold_a_post_past_its_deadline(
    server: ScriptedServer, make_pool: MakePool, prefix: bytes, piece: bytes
) -> None:
    server.script(drip(prefix, piece, interval=0.05))
    pool = make_pool(server.url, timeout=0.5, connect_timeout=0.5)

    async def scenario(http: AsyncHttp11) -> float:
        started = time.monotonic()
        with pytest.raises(TransportError):
            await post_ok(http)
        return time.monotonic() - started

    elapsed = run(pool, scenario)

    if prefix:
        assert 0.45 <= elapsed < 2.0
    else:  # eleven interim answers come within the deadline
        assert elapsed < 2.0


def test_server_that_never_answers_times_out(server: ScriptedServer, make_pool: MakePool) -> None:
    server.script(hang())
    pool = make_pool(server.url, timeout=0.5, connect_timeout=0.5)

    async def scenario(http: AsyncHttp11) -> float:
        started = time.monotonic()
        with pytest.raises(TransportError):
            await post_ok(http)
        return time.monotonic() - started

    elapsed = run(pool, scenario)

    assert 0.45 <= elapsed < 2.0
    assert len(server.requests) == 1


def test_tls_handshake_that_never_completes_times_out(
    silent_listener: SilentListener, make_pool: MakePool, client_tls: ssl.SSLContext
) -> None:
    pool = make_pool(
        f"https://localhost:{silent_listener.port}",
        timeout=5.0,
        connect_timeout=0.4,
        ssl_context=client_tls,
    )

    async def scenario(http: AsyncHttp11) -> float:
        started = time.monotonic()
        with pytest.raises(TransportError):
            await post_ok(http)
        return time.monotonic() - started

    elapsed = run(pool, scenario)

    assert silent_listener.hello.is_set()
    assert 0.35 <= elapsed < 2.0  # bounded by connect_timeout, not by timeout


# -- close() -----------------------------------------------------------------------------


def test_close_closes_kept_connections_and_can_be_called_twice(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> None:
        assert (await post_ok(http)).status == 200
        assert len(idle_streams(http)) == 1
        assert server.open_connections == 1

        http.close()
        http.close()

        assert idle_streams(http) == []
        assert await server_closed(server, 0)
        assert server.open_connections == 0
        # Closed for good, as the threads' pool: no new connection either.
        with pytest.raises(TransportError):
            await post_ok(http)
        assert http.opened == 1

    run(pool, scenario)


def test_a_post_in_flight_during_close_gets_its_answer_and_its_connection_is_not_kept(
    server: ScriptedServer, make_pool: MakePool
) -> None:
    gate = threading.Event()
    server.script(gated(gate, answer(OK)))
    pool = make_pool(server.url, timeout=2.0)

    async def scenario(http: AsyncHttp11) -> Reply:
        posting = asyncio.ensure_future(post_ok(http))
        await asyncio.to_thread(server.wait_for_requests, 1)
        http.close()
        gate.set()
        reply = await posting
        assert idle_streams(http) == []
        assert await server_closed(server, 0)
        return reply

    try:
        reply = run(pool, scenario)
    finally:
        gate.set()

    assert reply.status == 200


# -- TLS ---------------------------------------------------------------------------------


def test_tls_post_verifies_the_server_and_reuses_the_connection(
    make_server: MakeServer,
    make_pool: MakePool,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
) -> None:
    server = make_server(tls=server_tls)
    pool = make_pool(server.url, timeout=2.0, ssl_context=client_tls)

    async def scenario(http: AsyncHttp11) -> tuple[Reply, Reply, int]:
        first = await http.post("/one", b"a", {"Content-Type": "text/plain"})
        second = await http.post("/two", b"b", {"X-Chunked": "1"})
        return first, second, http.opened

    first, second, opened = run(pool, scenario)

    assert (first.status, first.body) == (200, b"/one|a")
    assert (second.status, second.body) == (200, b"/two|b")
    assert connections(server) == [0, 0]
    assert server.requests[0].all("Host") == [f"localhost:{server.port}"]
    assert opened == 1


def test_tls_answer_framed_by_close_is_read_fully(
    make_server: MakeServer,
    make_pool: MakePool,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
) -> None:
    # The server closes without a TLS close_notify, as the sync client tolerates.
    server = make_server(tls=server_tls)
    server.script(in_pieces(response(200, length=False), b"part one, ", b"part two", close=True))
    pool = make_pool(server.url, timeout=2.0, ssl_context=client_tls)

    async def scenario(http: AsyncHttp11) -> tuple[Reply, Reply]:
        return await post_ok(http), await post_ok(http)

    first, second = run(pool, scenario)

    assert (first.status, first.body) == (200, b"part one, part two")
    assert second.status == 200
    assert connections(server) == [0, 1]


def test_tls_kept_connection_the_server_closed_while_idle_is_replaced(
    make_server: MakeServer,
    make_pool: MakePool,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
) -> None:
    server = make_server(tls=server_tls)
    gate = threading.Event()
    server.script(close_when(gate, OK), answer(OK))
    pool = make_pool(server.url, timeout=2.0, ssl_context=client_tls)

    async def scenario(http: AsyncHttp11) -> tuple[Reply, int]:
        assert (await post_ok(http)).status == 200
        (stream,) = idle_streams(http)
        gate.set()
        assert await server_closed(server, 0)
        assert await until(lambda: closed_by_the_server(stream))
        return await post_ok(http), http.opened

    try:
        reply, opened = run(pool, scenario)
    finally:
        gate.set()

    assert reply.body == b'{"ok": true}'
    assert connections(server) == [0, 1]
    assert opened == 2


def test_tls_with_the_default_context_refuses_an_untrusted_certificate(
    make_server: MakeServer, make_pool: MakePool, server_tls: ssl.SSLContext
) -> None:
    server = make_server(tls=server_tls)
    pool = make_pool(server.url, timeout=2.0)  # certifi's roots: the test CA is not among them

    async def scenario(http: AsyncHttp11) -> None:
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await post_ok(http)

    run(pool, scenario)

    assert server.requests == []


def test_tls_refuses_a_certificate_for_another_host(
    make_server: MakeServer, make_pool: MakePool, ca: trustme.CA, client_tls: ssl.SSLContext
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("other.example").configure_cert(context)
    server = make_server(tls=context)
    pool = make_pool(server.url, timeout=2.0, ssl_context=client_tls)

    async def scenario(http: AsyncHttp11) -> None:
        with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
            await post_ok(http)

    run(pool, scenario)

    assert server.requests == []
