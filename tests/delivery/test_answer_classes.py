"""How answers other than a plain 200 are sorted: any 2xx is accepted, a 3xx is a
configuration problem (kept, retried, reported once), on both endpoints."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest

import meterstream
from helpers import hostile_server as hs
from helpers.delivery import (
    SECRET,
    Failures,
    check_stats,
    delivered_all,
    hostile_settings,
    record,
)

MakeClient = Callable[..., meterstream.MeterClient]


@pytest.fixture
def server() -> Iterator[hs.HostileServer]:
    with hs.HostileServer(SECRET) as srv:
        yield srv


@pytest.fixture
def client_settings(server: hs.HostileServer, failures: Failures) -> dict[str, Any]:
    return hostile_settings(server, failures, request_timeout=2, max_retry_time=30)


def session_body(token: str) -> bytes:
    now = datetime.now(timezone.utc)
    return json.dumps(
        {
            "id": "mes_2xx",
            "object": "v2.billing.meter_event_session",
            "authentication_token": token,
            "created": hs.rfc3339(now),
            "expires_at": hs.rfc3339(now + timedelta(minutes=15)),
            "livemode": False,
        }
    ).encode()


@pytest.mark.parametrize("status", [201, 202, 204, 299])
@pytest.mark.parametrize("http2", [False, True], ids=["lean", "httpx"])
def test_any_2xx_from_the_stream_is_accepted(
    server: hs.HostileServer,
    make_client: MakeClient,
    failures: list[tuple[list[dict[str, Any]], BaseException]],
    status: int,
    http2: bool,
) -> None:
    body = b"" if status == 204 else b"{}"
    server.set_default("stream", hs.status(status, body, store=True))
    client = make_client(http2=http2)
    ids = record(client, 7)
    assert client.flush(10)
    stats = delivered_all(server, client, ids)
    assert stats["retried"] == 0
    assert failures == []
    assert len(server.requests_to("stream")) == 1


@pytest.mark.parametrize("status", [201, 203])
@pytest.mark.parametrize("http2", [False, True], ids=["lean", "httpx"])
def test_a_2xx_session_with_a_usable_token_is_accepted(
    server: hs.HostileServer,
    make_client: MakeClient,
    failures: list[tuple[list[dict[str, Any]], BaseException]],
    status: int,
    http2: bool,
) -> None:
    server.tokens.add("tok_hostile_2xx")
    server.set_default("session", hs.status(status, session_body("tok_hostile_2xx")))
    client = make_client(http2=http2)
    ids = record(client, 3)
    assert client.flush(10)
    delivered_all(server, client, ids)
    assert failures == []
    assert len(server.requests_to("session")) == 1


@pytest.mark.parametrize("endpoint", ["session", "stream"])
@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("http2", [False, True], ids=["lean", "httpx"])
def test_a_redirect_is_kept_retried_and_reported_once_with_its_location(
    server: hs.HostileServer,
    make_client: MakeClient,
    failures: list[tuple[list[dict[str, Any]], BaseException]],
    caplog: pytest.LogCaptureFixture,
    endpoint: str,
    status: int,
    http2: bool,
) -> None:
    caplog.set_level(logging.DEBUG, logger="meterstream")
    location = "https://elsewhere.invalid/v2/billing/" + endpoint
    moved = hs.status(status, b"", {"Location": location})
    server.script(endpoint, moved, moved, moved, moved)
    client = make_client(http2=http2)
    ids = record(client, 5)
    assert client.flush(20)
    # Nothing lost, nothing refused: once the redirects stop, the batch goes.
    delivered_all(server, client, ids)
    assert failures == []
    assert check_stats(client, 5)["retried"] >= 4
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert f"answered {status} redirect to {location}" in message
    assert "check api_base/stream_base or the proxy" in message
    assert ("api_base" if endpoint == "session" else "stream_base") in message
