"""Outages with a spool: longer than max_retry_time, and longer than spool_max_bytes holds."""

from __future__ import annotations

from typing import Any, Callable

import pytest

import meterstream
from helpers.poll import wait_for
from helpers.spool import assert_each_once
from meterstream.emulator import Emulator

pytestmark = pytest.mark.slow

EVENTS = 250


def test_an_outage_longer_than_max_retry_time_waits_in_the_spool_and_arrives_once(
    emulator: Emulator,
    spool_path: str,
    make_client: Callable[..., meterstream.MeterClient],
) -> None:
    handed: list[Any] = []
    emulator.state.set_faults(fail_500=1.0)
    client = make_client(
        emulator.url,
        spool_path=spool_path,
        max_retry_time=0.5,
        on_delivery_error=lambda events, error: handed.append((events, error)),
    )
    expected = {f"outage-{n}" for n in range(EVENTS)}
    for ident in sorted(expected):
        client.record("api_calls", customer="cus_outage", identifier=ident)
    # Two max_retry_times: at least one batch has run out of time by now.
    assert client.flush(1.0) is False
    assert client.flush(1.0) is False
    stats = client.stats()
    assert stats["returned_to_spool"] > 0, stats  # the outage did outlast max_retry_time
    assert stats["failed"] == 0, stats
    assert stats["failed_retries_exhausted"] == 0, stats
    assert stats["failed_rejected"] == 0, stats
    assert emulator.state.event_count == 0

    emulator.state.set_faults(fail_500=0.0)
    assert client.flush(30), client.stats()
    assert_each_once(emulator, expected)
    assert len(emulator.state.events("api_calls")) == EVENTS
    stats = client.stats()
    assert stats["failed"] == 0, stats
    assert stats["failed_retries_exhausted"] == 0, stats
    assert stats["failed_rejected"] == 0, stats
    assert stats["sent"] == EVENTS, stats
    assert handed == []


def _fill(client: meterstream.MeterClient, prefix: str, limit: int) -> list[str]:
    """Record big events until the spool drops one (at most *limit*); the identifiers."""
    dims = {f"d{i}": "x" * 90 for i in range(5)}
    recorded: list[str] = []
    for n in range(limit):
        ident = f"{prefix}-{n:06d}"
        client.record("api_calls", customer="cus_full", identifier=ident, dimensions=dims)
        recorded.append(ident)
        if n % 256 == 0 and client.stats()["dropped_spool_full"]:
            # A little past the bound, so more than one record meets it.
            for m in range(n + 1, n + 200):
                ident = f"{prefix}-{m:06d}"
                client.record("api_calls", customer="cus_full", identifier=ident, dimensions=dims)
                recorded.append(ident)
            break
    return recorded


def test_a_full_spool_drops_new_events_counted_and_never_raises(
    dead_url: str,
    spool_path: str,
    make_client: Callable[..., meterstream.MeterClient],
) -> None:
    client = make_client(
        dead_url, spool_path=spool_path, spool_max_bytes=1 << 20, raise_errors=False
    )
    recorded = _fill(client, "full", 50_000)
    stats = client.stats()
    assert stats["dropped_spool_full"] >= 200, (len(recorded), stats)
    assert len(recorded) < 50_000, "1 MiB held 50,000 events of ~500 bytes"
    assert stats["dropped_spool_error"] == 0, stats


def test_a_full_spool_with_drop_oldest_hands_the_oldest_over_and_counts_them(
    dead_url: str,
    spool_path: str,
    make_client: Callable[..., meterstream.MeterClient],
) -> None:
    handed: list[str] = []
    client = make_client(
        dead_url,
        spool_path=spool_path,
        spool_max_bytes=1 << 20,
        overflow="drop_oldest",
        raise_errors=False,
        on_delivery_error=lambda events, error: handed.extend(e["identifier"] for e in events),
    )
    recorded = _fill(client, "oldest", 50_000)
    stats = client.stats()
    # The journal makes room a segment at a time: the oldest segment's events
    # not in flight are evicted together (counted with the queue's evictions).
    evicted = stats["dropped_queue_full"]
    assert evicted >= 200, (len(recorded), stats)
    # Evictions are handed over by a delivery thread, not by record().
    assert wait_for(lambda: len(handed) == evicted), (
        len(handed),
        stats,
    )
    assert len(set(handed)) == len(handed)
    # The oldest go: every evicted event is older than every one still waiting,
    # except those a delivery thread held in flight (at most a few batches).
    position = {ident: n for n, ident in enumerate(recorded)}
    newest_evicted = max(position[ident] for ident in handed)
    assert newest_evicted < len(recorded) - 200, "the newest events were evicted"
    assert stats["dropped_spool_error"] == 0, stats
