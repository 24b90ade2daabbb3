"""A client with spool_path: the spool between record() and delivery, end to end."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

import pytest

import meterstream
from meterstream.emulator import Emulator

KEY = "sk_test_spool_client"
FAST = {"retry_initial_delay": 0.01, "retry_max_delay": 0.05}


@pytest.fixture
def client_settings(emulator: Emulator, tmp_path: Path) -> dict[str, Any]:
    return {
        "api_key": KEY,
        "api_base": emulator.url,
        "stream_base": emulator.url,
        "spool_path": str(tmp_path / "spool.db"),
        **FAST,
    }


def identifiers(emulator: Emulator) -> list[str]:
    return [event["identifier"] for event in emulator.state.events()]


def test_recorded_events_go_through_the_spool_to_stripe(
    make_client: Callable[..., meterstream.MeterClient], emulator: Emulator
) -> None:
    client = make_client()
    for n in range(250):
        client.record("api_calls", customer="cus_1", identifier=f"id-{n}")
    assert client.flush(10)
    assert sorted(identifiers(emulator)) == sorted(f"id-{n}" for n in range(250))
    stats = client.stats()
    assert stats["sent"] == 250 and stats["recorded"] == 250
    assert stats["spool_pending"] == 0 and stats["queued"] == 0


def test_what_one_client_left_the_next_delivers_in_order(
    make_client: Callable[..., meterstream.MeterClient], emulator: Emulator
) -> None:
    emulator.set_faults(hang=True)
    # One request in flight at a time: with several, batches may arrive in
    # any order (docs/durability.md).
    first = make_client(request_timeout=0.5, max_concurrent_requests=1)
    for n in range(150):
        first.record("api_calls", customer="cus_1", identifier=f"id-{n:03d}")
    first.shutdown(0.2)  # nothing delivered: it all waits in the spool
    assert identifiers(emulator) == []
    emulator.set_faults(hang=False)  # the held request may now complete
    second = make_client(
        max_concurrent_requests=1
    )  # a restart: delivers without a record of its own
    assert second.flush(10)
    # The first client's requests, held by the hanging server, may arrive too:
    # the same identifiers again, which Stripe drops. Oldest first, each once.
    first_seen = list(dict.fromkeys(identifiers(emulator)))
    assert first_seen == [f"id-{n:03d}" for n in range(150)]


def test_an_outage_longer_than_max_retry_time_loses_nothing(
    make_client: Callable[..., meterstream.MeterClient], emulator: Emulator
) -> None:
    failures: list[Any] = []
    emulator.set_faults(fail_500=1.0)
    client = make_client(max_retry_time=0.2, on_delivery_error=lambda e, err: failures.append(err))
    for n in range(120):
        client.record("api_calls", customer="cus_1", identifier=f"id-{n}")
    assert client.flush(1.0) is False  # Stripe is down: the events wait
    stats = client.stats()
    assert stats["failed"] == 0 and stats["returned_to_spool"] > 0
    assert stats["spool_pending"] == 120
    emulator.set_faults(fail_500=0.0)
    assert client.flush(20)
    assert sorted(set(identifiers(emulator))) == sorted(f"id-{n}" for n in range(120))
    assert failures == []


def test_a_refused_event_goes_to_the_dead_letters_and_the_rest_are_sent(
    make_client: Callable[..., meterstream.MeterClient], emulator: Emulator
) -> None:
    emulator.set_faults(reject_identifier="bad-1")
    failures: list[Any] = []
    client = make_client(on_delivery_error=lambda events, error: failures.extend(events))
    for n in range(10):
        client.record("api_calls", customer="cus_1", identifier=f"id-{n}")
    client.record("api_calls", customer="cus_1", identifier="bad-1")
    assert client.flush(10)
    assert "bad-1" not in identifiers(emulator)
    assert len(set(identifiers(emulator))) == 10
    assert [e["identifier"] for e in failures] == ["bad-1"]
    assert client.spool is not None
    assert [d["identifier"] for d in client.spool.admin.export("dead")] == ["bad-1"]
    assert client.stats()["spool_dead"] == 1


def test_a_full_spool_drops_new_events_counted_and_never_raises(
    make_client: Callable[..., meterstream.MeterClient], emulator: Emulator
) -> None:
    emulator.set_faults(hang=True)
    client = make_client(spool_max_bytes=1 << 20, request_timeout=0.5)
    for n in range(20_000):
        client.record("api_calls", customer="cus_" + "x" * 100, identifier=f"id-{n}")
    stats = client.stats()
    assert stats["dropped_spool_full"] > 0
    assert stats["recorded"] + stats["dropped_spool_full"] == 20_000
    emulator.set_faults(hang=False)


def test_threads_record_into_one_spool(
    make_client: Callable[..., meterstream.MeterClient], emulator: Emulator
) -> None:
    client = make_client()

    def work(t: int) -> None:
        for n in range(300):
            client.record("api_calls", customer=f"cus_{t}", identifier=f"t{t}-{n}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.flush(20)
    assert len(set(identifiers(emulator))) == 1200
    assert emulator.state.duplicates == 0


def test_a_spool_that_cannot_be_opened_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(meterstream.ConfigurationError, match="spool_path"):
        meterstream.MeterClient(exporter="memory", spool_path=str(tmp_path / "no" / "x.db"))
    (tmp_path / "text.db").write_text("not a database")
    with pytest.raises(meterstream.ConfigurationError, match="spool_path"):
        meterstream.MeterClient(exporter="memory", spool_path=str(tmp_path / "text.db"))
    with pytest.raises(meterstream.ConfigurationError, match="spool_sync"):
        meterstream.MeterClient(
            exporter="memory", spool_path=str(tmp_path / "x.db"), spool_sync="always"
        )
