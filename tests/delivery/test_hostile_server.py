"""Delivery against a server we did not write: resets, late answers, garbage, odd sessions.

The server (``helpers/hostile_server.py``) speaks raw HTTP/1.1 on a socket and answers
each request as the test scripts it. Every test then checks the invariants
users rely on: each recorded event stored exactly once (by identifier), a
batch's retries carry the same ``Idempotency-Key`` and identifiers, the secret
key only ever goes to the session endpoint (and a session token only to the
stream), ``flush()`` is True only when everything settled, and ``stats()``
adds up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any, Callable

import pytest

import meterstream
from helpers import hostile_server as hs
from helpers.delivery import (
    SECRET,
    Failures,
    check_stats,
    check_wire,
    delivered_all,
    hostile_settings,
    join_threads,
    record,
)
from helpers.poll import wait_for
from meterstream.errors import DeliveryError

MakeClient = Callable[..., meterstream.MeterClient]


@pytest.fixture
def server() -> Iterator[hs.HostileServer]:
    with hs.HostileServer(SECRET) as srv:
        yield srv


@pytest.fixture
def client_settings(server: hs.HostileServer, failures: Failures) -> dict[str, Any]:
    return hostile_settings(server, failures)


CONCURRENCY = pytest.mark.parametrize("concurrency", [1, 4])


# -- the happy path, as a baseline ----------------------------------------------------------


@CONCURRENCY
def test_a_well_behaved_server_gets_everything_once(
    server: hs.HostileServer, make_client: MakeClient, concurrency: int
) -> None:
    client = make_client(batch_size=40, max_concurrent_requests=concurrency)
    ids = record(client, 250)
    generated = 30
    for _ in range(generated):
        client.record("api_calls", 2, customer="cus_gen")
    assert client.flush(10)
    stored = server.stored_identifiers()
    assert set(ids) <= stored and len(stored) == 250 + generated
    assert server.duplicates == 0
    stats = check_stats(client, 250 + generated)
    assert stats["sent"] == 250 + generated and stats["sessions_opened"] == 1
    check_wire(server)


# -- connections that break ---------------------------------------------------------------


@CONCURRENCY
def test_resets_before_and_after_storing_resend_the_same_batch(
    server: hs.HostileServer, make_client: MakeClient, concurrency: int
) -> None:
    server.script(
        "stream",
        hs.Action("reset", store=False),
        hs.Action("reset", store=True),  # stored, then the answer is lost
        hs.Action("reset", store=True),
        hs.ok(),
        hs.Action("reset", store=True),
    )
    client = make_client(batch_size=10, max_concurrent_requests=concurrency)
    ids = record(client, 50)
    assert client.flush(10)
    stats = delivered_all(server, client, ids)
    assert stats["retried"] >= 4
    assert server.duplicates > 0  # the stored-then-reset batches came back, deduped


def test_a_reset_on_the_session_endpoint_is_retried(
    server: hs.HostileServer, make_client: MakeClient
) -> None:
    server.script("session", hs.Action("reset"), hs.Action("reset"))
    client = make_client()
    ids = record(client, 5)
    assert client.flush(10)
    stats = delivered_all(server, client, ids)
    assert stats["sessions_opened"] == 1


@CONCURRENCY
def test_keep_alive_connections_closed_after_each_answer_are_reopened(
    server: hs.HostileServer, make_client: MakeClient, concurrency: int
) -> None:
    server.set_default("stream", hs.Action("close"))
    server.script("session", hs.Action("close"))
    client = make_client(batch_size=5, max_concurrent_requests=concurrency)
    ids: list[str] = []
    for round_ in range(4):
        ids += record(client, 12, tag=f"r{round_}")
        assert client.flush(10)
    delivered_all(server, client, ids)
    streams = server.requests_to("stream")
    # Every answer closed its connection, so no two stream requests share one.
    assert len({r.connection for r in streams}) == len(streams)


# -- answers that come late, short, or as garbage ----------------------------------------------


@CONCURRENCY
def test_a_200_after_the_client_gave_up_is_retried_and_deduped(
    server: hs.HostileServer, make_client: MakeClient, concurrency: int
) -> None:
    # The server stores the batch at once but answers after request_timeout.
    server.script("stream", hs.Action("slow", delay=1.0))
    client = make_client(batch_size=10, max_concurrent_requests=concurrency)
    ids = record(client, 10)
    assert client.flush(10)
    stats = delivered_all(server, client, ids)
    assert stats["retried"] >= 1
    assert server.duplicates == 10
    first, second = server.requests_to("stream")[:2]
    assert first.idempotency_key == second.idempotency_key
    assert second.at - first.at >= 0.4  # it waited for the timeout


def test_a_slow_session_answer_times_out_and_is_retried(
    server: hs.HostileServer, make_client: MakeClient
) -> None:
    server.script("session", hs.Action("slow", delay=1.0))
    client = make_client()
    ids = record(client, 3)
    assert client.flush(10)
    delivered_all(server, client, ids)


def test_a_truncated_200_on_the_stream_is_retried(
    server: hs.HostileServer, make_client: MakeClient
) -> None:
    server.script("stream", hs.Action("truncated", store=True), hs.Action("truncated"))
    client = make_client(batch_size=7)
    ids = record(client, 7)
    assert client.flush(10)
    stats = delivered_all(server, client, ids)
    assert stats["retried"] == 2


@pytest.mark.parametrize(
    "bad_session",
    [
        hs.status(200, b"<html>hello from the proxy</html>", {"Content-Type": "text/html"}),
        hs.status(200, b"\xff\xfe\x00garbage"),
        hs.status(200, b""),
        hs.status(200, b"[]"),
        hs.status(200, b'"tok"'),
        hs.status(200, b"null"),
        hs.status(200, b'{"authentication_token": "", "created": "x", "expires_at": "y"}'),
        hs.status(200, b'{"created": "2024-06-01T12:00:00Z"}'),
        hs.Action("truncated"),
        hs.Action("session", created="2024-06-01T12:00:00Z", expires_at="soon"),
        hs.Action("session", created="yesterday", expires_at="2024-06-01T12:15:00Z"),
    ],
    ids=[
        "html",
        "binary",
        "empty",
        "list",
        "string",
        "null",
        "empty-token",
        "no-token",
        "truncated",
        "unparsable-expiry",
        "unparsable-created",
    ],
)
def test_a_malformed_session_answer_is_retried(
    server: hs.HostileServer, make_client: MakeClient, bad_session: hs.Action
) -> None:
    server.script("session", bad_session)
    client = make_client()
    ids = record(client, 4)
    assert client.flush(10)
    stats = delivered_all(server, client, ids)
    assert stats["sessions_opened"] == 1
    assert len(server.requests_to("session")) == 2


def _session(created: datetime, expires: datetime) -> hs.Action:
    return hs.Action("session", created=hs.rfc3339(created), expires_at=hs.rfc3339(expires))


NOW = datetime.now(timezone.utc)
LONG_AGO = datetime(2001, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "session",
    [
        _session(NOW, NOW),  # expires_at == created
        _session(NOW, NOW - timedelta(minutes=5)),  # expires before it was created
        _session(LONG_AGO, LONG_AGO + timedelta(minutes=15)),  # a server clock far behind
        _session(NOW + timedelta(days=400), NOW + timedelta(days=400, minutes=15)),
        hs.Action("session", created="2024-06-01T12:00:00", expires_at="2024-06-01T12:15:00"),
        hs.Action(
            "session",
            created="2024-06-01T12:00:00.123456789+02:00",
            expires_at="2024-06-01T10:15:00.1Z",
        ),
    ],
    ids=["zero-lifetime", "negative", "distant-past", "far-future", "naive", "nanoseconds"],
)
def test_odd_session_lifetimes_still_deliver_and_refresh_on_401(
    server: hs.HostileServer, make_client: MakeClient, session: hs.Action
) -> None:
    server.script("session", session)
    client = make_client(batch_size=5)
    ids = record(client, 5, tag="a")
    assert client.flush(10)
    # The server says the token expired: a new session, the same batch again.
    server.revoke_all_tokens()
    ids += record(client, 5, tag="b")
    assert client.flush(10)
    stats = delivered_all(server, client, ids)
    assert stats["sessions_opened"] == 2


def test_a_session_lifetime_is_timed_from_the_server_not_the_local_clock(
    server: hs.HostileServer, make_client: MakeClient
) -> None:
    # Created and expired in 2001 by the local clock, but a 15 minute lifetime:
    # the token is good, and is reused.
    server.script("session", _session(LONG_AGO, LONG_AGO + timedelta(minutes=15)))
    client = make_client(batch_size=5)
    ids: list[str] = []
    for round_ in range(3):
        ids += record(client, 5, tag=f"r{round_}")
        assert client.flush(10)
    stats = delivered_all(server, client, ids)
    assert stats["sessions_opened"] == 1


# -- status codes and headers --------------------------------------------------------------------


def _past_http_date() -> str:
    return format_datetime(datetime(2015, 10, 21, 7, 28, tzinfo=timezone.utc), usegmt=True)


@pytest.mark.parametrize(
    "failure",
    [
        hs.status(500, b"Internal Server Error", {"Content-Type": "text/plain"}),
        hs.status(502, b"<html>bad gateway</html>", {"Content-Type": "text/html"}),
        hs.status(503, b"", {"Retry-After": _past_http_date()}),
        hs.status(503, b"{}", {"Retry-After": "Sun, 99 Nop 1900 99:99:99 GMT"}),
        hs.status(503, b"{}", {"Retry-After": "-5"}),
        hs.status(429, b'{"error": {"type": "rate_limit", "code": "rate_limit"}}'),
        hs.status(429, b"slow down"),
        hs.status(408, b""),
        hs.status(409, b'{"error": "not an object"}'),
        hs.status(400, b"[1, 2]", {"Stripe-Should-Retry": "true"}),
        hs.status(404, b"", {"Stripe-Should-Retry": "true"}),
    ],
    ids=[
        "500-text",
        "502-html",
        "503-past-date",
        "503-bad-date",
        "503-negative",
        "429-json",
        "429-text",
        "408",
        "409",
        "400-should-retry",
        "404-should-retry",
    ],
)
def test_transient_failures_are_retried_with_the_same_batch(
    server: hs.HostileServer, make_client: MakeClient, failure: hs.Action
) -> None:
    server.script("stream", failure, failure, failure)
    client = make_client(batch_size=6)
    ids = record(client, 6)
    assert client.flush(10)
    stats = delivered_all(server, client, ids)
    assert stats["retried"] == 3
    assert len({r.idempotency_key for r in server.requests_to("stream")}) == 1


def test_transient_failures_on_the_session_endpoint_are_retried(
    server: hs.HostileServer, make_client: MakeClient
) -> None:
    server.script(
        "session",
        hs.status(500, b"oops"),
        hs.status(429, b""),
        hs.status(400, b"", {"Stripe-Should-Retry": "true"}),
        hs.status(503, b"", {"Retry-After": _past_http_date()}),
    )
    client = make_client()
    ids = record(client, 3)
    assert client.flush(10)
    stats = delivered_all(server, client, ids)
    assert stats["sessions_opened"] == 1


def test_retry_after_as_an_http_date_is_honoured(
    server: hs.HostileServer, make_client: MakeClient
) -> None:
    # An HTTP date has whole seconds: "now + 2 s" is between 1 and 2 s away.
    when = datetime.now(timezone.utc) + timedelta(seconds=2)
    server.script("stream", hs.status(503, b"busy", {"Retry-After": format_datetime(when, True)}))
    client = make_client()
    ids = record(client, 4)
    assert client.flush(10)
    delivered_all(server, client, ids)
    first, second = server.requests_to("stream")
    assert second.at - first.at >= 0.9


@CONCURRENCY
def test_a_401_with_a_non_json_body_rotates_the_session_and_resends(
    server: hs.HostileServer, make_client: MakeClient, concurrency: int
) -> None:
    server.script("stream", hs.status(401, b"<html>Unauthorized</html>"))
    client = make_client(batch_size=8, max_concurrent_requests=concurrency)
    ids = record(client, 8)
    assert client.flush(10)
    stats = delivered_all(server, client, ids)
    assert stats["sessions_opened"] == 2
    first, second = server.requests_to("stream")[:2]
    assert first.authorization != second.authorization
    assert first.idempotency_key == second.idempotency_key


@pytest.mark.parametrize(
    "refusal",
    [
        hs.status(500, b"nope", {"Stripe-Should-Retry": "false"}),
        hs.status(503, b"", {"Stripe-Should-Retry": "false", "Retry-After": "1"}),
        # A 400 naming no event is bisected (tests/delivery/test_bad_events.py);
        # any other 4xx refuses the batch as a whole.
        hs.status(422, b"Unprocessable"),
        hs.status(401, b"", {"Stripe-Should-Retry": "false"}),
        hs.status(413, b"<html>too large</html>"),
    ],
    ids=["500-no-retry", "503-no-retry", "422-text", "401-no-retry", "413"],
)
def test_refusals_are_settled_once_and_do_not_block_what_follows(
    server: hs.HostileServer,
    make_client: MakeClient,
    failures: list[tuple[list[dict[str, Any]], BaseException]],
    refusal: hs.Action,
) -> None:
    server.script("stream", refusal)
    client = make_client(batch_size=5, max_concurrent_requests=1)
    refused = record(client, 5, tag="refused")
    ids = record(client, 10, tag="ok")
    assert client.flush(10)
    assert server.stored_identifiers() == set(ids)
    stats = check_stats(client, 15)
    assert stats["sent"] == 10 and stats["failed_rejected"] == 5 and stats["queued"] == 0
    assert stats["retried"] == 0
    ((events, error),) = failures
    assert [e["identifier"] for e in events] == refused
    assert isinstance(error, DeliveryError) and error.reason == "rejected"
    assert error.status == refusal.status
    assert sum(1 for r in server.requests_to("stream") if r.identifiers[0] == "refused-0") == 1
    check_wire(server)


def test_a_refused_secret_key_is_settled_and_never_logged(
    server: hs.HostileServer,
    make_client: MakeClient,
    failures: list[tuple[list[dict[str, Any]], BaseException]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server.set_default("session", hs.status(401, b"<html>Invalid API key</html>"))
    client = make_client(batch_size=3)
    ids = record(client, 6)
    assert client.flush(10)
    stats = check_stats(client, 6)
    assert stats["failed_rejected"] == 6 and stats["sent"] == 0
    assert {e.reason for _, e in failures} == {"authentication"}  # type: ignore[attr-defined]
    assert sorted(e["identifier"] for events, _ in failures for e in events) == sorted(ids)
    assert SECRET not in caplog.text
    assert all(SECRET not in str(e) and SECRET not in repr(e) for _, e in failures)
    assert SECRET not in repr(client) and SECRET not in repr(client.settings)
    check_wire(server)


def test_the_secret_key_is_redacted_even_when_the_server_echoes_it(
    server: hs.HostileServer,
    make_client: MakeClient,
    failures: list[tuple[list[dict[str, Any]], BaseException]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = f'{{"error": {{"code": "api_key_invalid", "message": "bad key {SECRET}"}}}}'
    server.set_default("session", hs.status(401, echo.encode()))
    client = make_client()
    record(client, 2)
    assert client.flush(10)
    assert failures
    assert all(SECRET not in str(e) for _, e in failures)
    assert SECRET not in caplog.text


# -- the whole gauntlet, and flush() honesty -----------------------------------------------------


@CONCURRENCY
def test_a_gauntlet_of_faults_loses_and_duplicates_nothing(
    server: hs.HostileServer,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
    concurrency: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    faults = [
        hs.Action("reset", store=True),
        hs.status(500, b"x"),
        hs.ok(),
        hs.Action("close"),
        hs.Action("reset"),
        hs.status(429, b""),
        hs.Action("slow", delay=0.7),
        hs.Action("truncated", store=True),
        hs.status(503, b"", {"Retry-After": "0"}),
        hs.status(401, b"expired?"),
        hs.status(400, b"", {"Stripe-Should-Retry": "true"}),
        hs.ok(),
    ]
    server.script("stream", *(faults * 4))
    server.script("session", hs.Action("reset"), hs.status(500, b""), hs.Action("close"))
    client = make_client(batch_size=20, max_concurrent_requests=concurrency)
    ids = record(client, 600)
    assert client.flush(20)
    stats = delivered_all(server, client, ids)
    assert server.scripted_left("stream") == 0
    assert stats["retried"] >= 30
    assert SECRET not in caplog.text


def test_flush_is_false_while_the_server_fails_and_true_once_it_recovers(
    server: hs.HostileServer, make_client: MakeClient
) -> None:
    server.set_default("stream", hs.status(503, b"down"))
    client = make_client(batch_size=10)
    ids = record(client, 25)
    assert client.flush(0.3) is False
    stats = check_stats(client, 25)
    assert stats["queued"] == 25 and stats["sent"] == 0
    server.set_default("stream", hs.ok())
    assert client.flush(10)
    delivered_all(server, client, ids)


def test_retries_run_out_after_max_retry_time(
    server: hs.HostileServer,
    make_client: MakeClient,
    failures: list[tuple[list[dict[str, Any]], BaseException]],
) -> None:
    server.set_default("stream", hs.Action("reset", store=True))
    client = make_client(batch_size=5, max_retry_time=0.3)
    ids = record(client, 10)
    assert client.flush(10)
    stats = check_stats(client, 10)
    assert stats["failed_retries_exhausted"] == 10 and stats["queued"] == 0
    assert {e.reason for _, e in failures} == {"retries_exhausted"}  # type: ignore[attr-defined]
    assert server.stored_identifiers() == set(ids)  # at-least-once: they did arrive
    check_wire(server)


# -- shutdown() keeps its deadline whatever the server does ----------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "concurrency"),
    [
        (hs.Action("hang"), 1),
        (hs.Action("hang"), 4),
        (hs.Action("drip", delay=0.1), 1),
        (hs.Action("slow", delay=5.0), 4),
        (hs.Action("reset"), 1),
        (hs.status(500, b""), 4),
        (hs.status(503, b"", {"Retry-After": "3"}), 1),
    ],
    ids=["hang-1", "hang-4", "drip-1", "slow-4", "reset-1", "500-4", "retry-after-1"],
)
def test_shutdown_returns_in_time_whatever_the_server_does(
    server: hs.HostileServer,
    make_client: MakeClient,
    failures: list[tuple[list[dict[str, Any]], BaseException]],
    caplog: pytest.LogCaptureFixture,
    internal_errors: list[BaseException],
    behaviour: hs.Action,
    concurrency: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    server.set_default("stream", behaviour)
    client = make_client(batch_size=10, max_concurrent_requests=concurrency, request_timeout=1)
    record(client, 45)
    assert wait_for(lambda: len(server.requests_to("stream")) > 0)
    started = time.monotonic()
    assert client.shutdown(0.5) is False
    assert time.monotonic() - started < 1.5
    stats = check_stats(client, 45)
    assert stats["queued"] == 0 and stats["sent"] == 0
    assert stats["dropped_shutdown"] + stats["failed"] == 45
    handed = sum(len(events) for events, _ in failures)
    assert handed == 45  # every undelivered event reached on_delivery_error
    assert SECRET not in caplog.text
    check_wire(server)
    # A sender between two attempts meets the closed exporter: that is a
    # shutdown outcome, not an internal error (the autouse fixture checks).
    join_threads(client)


# -- bugs found (and fixed) ----------------------------------------------------------------------


def test_a_trickling_answer_does_not_hold_a_batch_past_max_retry_time(
    server: hs.HostileServer, make_client: MakeClient
) -> None:
    server.script("stream", hs.Action("drip", delay=0.1))
    client = make_client(max_concurrent_requests=1, max_retry_time=3)
    ids = record(client, 3)
    # The watchdog cuts the trickle after request_timeout (0.5 s) and the batch
    # is retried, with the same identifiers.
    started = time.monotonic()
    assert client.flush(3)
    assert time.monotonic() - started < 2
    assert check_stats(client, 3)["queued"] == 0
    assert server.stored_identifiers() == set(ids)


@pytest.mark.parametrize("token", ["tok_\u20ac", "tok_\r\nX-Injected: 1"], ids=["euro", "crlf"])
def test_an_unusable_session_token_is_replaced(
    server: hs.HostileServer,
    make_client: MakeClient,
    internal_errors: list[BaseException],
    token: str,
) -> None:
    server.script("session", hs.Action("session", token=token))
    client = make_client(max_retry_time=5)
    ids = record(client, 3)
    delivered = client.flush(1.5)
    client.shutdown(0.5)
    join_threads(client)
    swallowed = list(internal_errors)
    internal_errors.clear()
    assert delivered
    assert swallowed == []
    assert server.stored_identifiers() == set(ids)


@pytest.mark.parametrize(
    ("created", "expires_at"),
    [(1717243200, 1717244100), ("2024-06-01T12:00:00Z", False)],
    ids=["unix-numbers", "false"],
)
def test_non_string_session_times_are_a_malformed_answer_not_a_crash(
    server: hs.HostileServer,
    make_client: MakeClient,
    internal_errors: list[BaseException],
    created: Any,
    expires_at: Any,
) -> None:
    server.script("session", hs.Action("session", created=created, expires_at=expires_at))
    client = make_client()
    ids = record(client, 2)
    delivered = client.flush(10)
    swallowed = list(internal_errors)
    internal_errors.clear()
    assert delivered
    assert server.stored_identifiers() == set(ids)
    assert swallowed == []


def test_a_sender_resuming_after_shutdown_closed_the_exporter_is_not_an_internal_error(
    server: hs.HostileServer,
    make_client: MakeClient,
    internal_errors: list[BaseException],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Stands in for a sender thread descheduled just before its next attempt,
    # while shutdown() runs to the end: it resumes once the client is closed.
    server.set_default("stream", hs.status(500, b""))
    client = make_client(max_concurrent_requests=4)
    exporter: Any = client.exporter
    sessions = exporter.sessions
    real_token = sessions.token
    calls: list[int] = []

    def token() -> str:
        calls.append(1)
        if len(calls) == 2:  # the retry
            wait_for(lambda: exporter._http.is_closed, timeout=5)
        return str(real_token())

    monkeypatch.setattr(sessions, "token", token)
    record(client, 3)
    assert wait_for(lambda: len(calls) >= 2)
    assert client.shutdown(0.2) is False
    assert wait_for(lambda: client.stats()["queued"] == 0 and len(calls) >= 2)
    join_threads(client)
    swallowed = list(internal_errors)
    internal_errors.clear()
    assert swallowed == []
