"""``close()``: it aborts a POST waiting on another thread, and a closed pool opens nothing."""

from __future__ import annotations

import time

import pytest

from helpers.http11 import MakePool, PostInThread, ScriptedServer, hang, post_ok
from meterstream._exporters.stripe._http11 import TransportError


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
