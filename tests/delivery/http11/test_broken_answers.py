"""Broken answers: each raises TransportError promptly, and the next POST reconnects."""

from __future__ import annotations

import socket
import time

import pytest

from helpers.http11 import (
    CHUNKED,
    OK,
    Action,
    MakePool,
    ScriptedServer,
    answer,
    answer_then_close,
    chunked_response,
    close_without_answer,
    in_pieces,
    padded_head,
    post_ok,
    reset,
    response,
)
from meterstream._exporters.stripe._http11 import MAX_BODY, MAX_HEAD, TransportError


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
