"""A plain POST on the lean HTTP/1.1 client: the request it writes, the reply it reads."""

from __future__ import annotations

import pytest

from helpers.http11 import OK, STREAM_PATH, MakePool, ScriptedServer, answer, post_ok, response
from meterstream._exporters.stripe._http11 import Http11Pool, Reply


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
