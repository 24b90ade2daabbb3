"""Keep-alive: which kept connection a POST reuses, which it drops, and how many are kept."""

from __future__ import annotations

import threading

import pytest

from helpers.http11 import (
    OK,
    Action,
    MakePool,
    ScriptedServer,
    answer,
    answer_then_close,
    gated,
    idle_sockets,
    in_pieces,
    post_ok,
    response,
    wait_until_idle_connections_are_readable,
)
from meterstream._exporters.stripe._http11 import Http11Pool, TransportError

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
