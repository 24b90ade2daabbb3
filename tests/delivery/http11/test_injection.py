"""Header and path injection: a request that would smuggle bytes raises and sends nothing."""

from __future__ import annotations

import pytest

from helpers.http11 import MakePool, ScriptedServer


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
