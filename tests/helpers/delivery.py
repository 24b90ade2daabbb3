"""What the delivery tests share: their keys, fast retries, events with known
identifiers, the checks that each arrived once, and a scripted exporter."""

from __future__ import annotations

import time
from typing import Any

import meterstream
from helpers import hostile_server as hs
from meterstream._exporters.base import EventBatch, Exporter, RetryableExportError

API_KEY = "sk_test_delivery"

#: Fast retries, so fault tests take milliseconds, not the production backoff.
FAST_RETRIES: dict[str, Any] = {"retry_initial_delay": 0.005, "retry_max_delay": 0.05}

#: The secret key given to clients aimed at the hostile server, which must never leak.
SECRET = "sk_test_hostile_S3CR3T_do_not_leak"

#: What ``on_delivery_error`` was given: (the events, the error), in order.
Failures = list[tuple[list[dict[str, Any]], BaseException]]


def hostile_settings(
    server: hs.HostileServer, failures: Failures, **settings: Any
) -> dict[str, Any]:
    """Client settings aimed at the hostile server: quick retries and timeouts,
    delivery errors noted in *failures*; *settings* win."""
    return {
        "api_key": SECRET,
        "api_base": server.url,
        "stream_base": server.url,
        "retry_initial_delay": 0.005,
        "retry_max_delay": 0.05,
        "request_timeout": 0.5,
        "max_retry_time": 10,
        # It serves sessions and the stream, not the meters list.
        "check_event_names": False,
        "on_delivery_error": lambda events, error: failures.append((list(events), error)),
        **settings,
    }


def record(client: meterstream.MeterClient, n: int, tag: str = "e") -> list[str]:
    """Record *n* events with known identifiers; returns them."""
    ids = [f"{tag}-{i}" for i in range(n)]
    for i, identifier in enumerate(ids):
        client.record("api_calls", i % 5 + 1, customer=f"cus_{i % 3}", identifier=identifier)
    return ids


def check_wire(server: hs.HostileServer) -> None:
    """What crossed the wire: credentials in the right places, stable retries."""
    sessions = server.requests_to("session")
    streams = server.requests_to("stream")
    for request in sessions:
        # Only ever the secret key here: never a session token.
        assert request.authorization == f"Bearer {SECRET}"
        assert request.headers.get("stripe-version")
    key_of: dict[str, str] = {}
    ids_of: dict[str, tuple[str, ...]] = {}
    for request in streams:
        # Never the secret key on the stream: only a token the server issued.
        assert SECRET not in request.authorization
        assert SECRET.encode() not in request.body
        assert request.authorization.startswith("Bearer tok_hostile_")
        # Stripe wants these on every request, the stream's too.
        assert request.headers.get("stripe-version")
        assert request.headers.get("content-type") == "application/json"
        key = request.idempotency_key
        assert key, "every stream request carries an Idempotency-Key"
        assert request.events is not None
        # A retry of a batch is the same batch: same key, same identifiers, same order.
        assert ids_of.setdefault(key, request.identifiers) == request.identifiers
        for identifier in request.identifiers:
            # An event belongs to one batch, so to one key, for its whole life.
            assert key_of.setdefault(identifier, key) == key
    assert not [r for r in server.requests if r.endpoint == "other"]


def check_stats(client: meterstream.MeterClient, recorded: int) -> dict[str, int]:
    stats = client.stats()
    assert stats["recorded"] == recorded
    assert (
        stats["sent"] + stats["failed"] + stats["dropped_shutdown"] + stats["queued"]
        == stats["recorded"]
    )
    assert stats["failed"] == stats["failed_rejected"] + stats["failed_retries_exhausted"]
    return stats


def delivered_all(
    server: hs.HostileServer, client: meterstream.MeterClient, ids: list[str]
) -> dict[str, int]:
    """Everything recorded is stored exactly once and counted as sent."""
    assert server.stored_identifiers() == set(ids)
    stats = check_stats(client, len(ids))
    assert stats["sent"] == len(ids)
    assert stats["queued"] == stats["failed"] == stats["dropped"] == 0
    check_wire(server)
    return stats


def join_threads(client: meterstream.MeterClient) -> None:
    """After shutdown(): wait for the delivery threads to end (they were told to)."""
    delivery: Any = client._delivery
    for thread in [delivery._thread, *delivery._workers]:
        if thread is not None:
            thread.join(5)
            assert not thread.is_alive()


class ScriptedExporter(Exporter):
    """Answers each export with the next scripted failure, then accepts."""

    max_concurrency = 1

    def __init__(self, script: list[RetryableExportError]) -> None:
        self.script = list(script)
        self.attempts: list[float] = []

    def export(self, events: EventBatch, batch_id: str = "") -> None:
        self.attempts.append(time.monotonic())
        if self.script:
            raise self.script.pop(0)
