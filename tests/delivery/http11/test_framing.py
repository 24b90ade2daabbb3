"""How a reply's body is framed: no body, Content-Length, chunked, split writes, interim answers."""

from __future__ import annotations

import pytest

from helpers.http11 import (
    CHUNKED,
    OK,
    Action,
    MakePool,
    ScriptedServer,
    answer,
    byte_by_byte,
    chunked_response,
    in_pieces,
    post_ok,
    response,
)
from meterstream._exporters.stripe._http11 import MAX_BODY

# -- no body, Content-Length -------------------------------------------------------------


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
