"""Deadlines: a server that drips or never answers cannot hold a POST past its timeout."""

from __future__ import annotations

import time

import pytest

from helpers.http11 import CHUNKED, MakePool, ScriptedServer, drip, hang, post_ok
from meterstream._exporters.stripe._http11 import TransportError


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
