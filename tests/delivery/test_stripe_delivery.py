"""Delivery to a real emulator over HTTP: sessions, batches, rotation, refusals."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import pytest

import meterstream
from helpers.delivery import API_KEY
from meterstream.emulator import Emulator


def record_many(client: meterstream.MeterClient, n: int, customer: str = "cus_1") -> None:
    for i in range(n):
        client.record("api_calls", i % 7 + 1, customer=customer)


def test_events_reach_the_stream_in_batches_of_at_most_batch_size(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    client = make_client(batch_size=40)
    record_many(client, 250)
    assert client.flush(10)
    stats = client.stats()
    assert stats["sent"] == stats["recorded"] == 250
    assert stats["sessions_opened"] == 1
    # 250 events in batches of at most 40: at least 7 stream requests.
    stream = emulator.state.requests.get("meter_event_stream", {})
    assert sum(stream.values()) == stats["requests"] - 1 >= 7
    total = emulator.state.total("api_calls", "cus_1")
    assert total.count == 250
    assert total.sum == sum(i % 7 + 1 for i in range(250))


def test_wire_events_keep_identifier_name_timestamp_and_string_payload(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    client = make_client()
    client.record(
        "llm_tokens", 12.5, customer="cus_9", identifier="req-1", dimensions={"model": "m1"}
    )
    assert client.flush(10)
    (event,) = emulator.state.events("llm_tokens")
    assert event["identifier"] == "req-1"
    assert event["payload"] == {"stripe_customer_id": "cus_9", "value": "12.5", "model": "m1"}
    assert event["timestamp"].endswith("Z")


def test_a_forced_401_rotates_the_session_and_resends_the_same_batch(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    client = make_client()
    record_many(client, 10)
    assert client.flush(10)
    emulator.set_faults(expire_next=2)
    record_many(client, 10)
    assert client.flush(10)
    stats = client.stats()
    assert stats["sessions_opened"] == 3
    assert stats["sent"] == 20
    assert emulator.state.total("api_calls", "cus_1").count == 20
    assert emulator.state.duplicates == 0


def test_sessions_expiring_every_second_lose_nothing(
    make_client: Callable[..., meterstream.MeterClient],
) -> None:
    # The emulator's clock is an hour ahead of ours: the refresh is timed from
    # the lifetime the server states, so the skew must not matter.
    with Emulator(auto_create_meters=True, session_ttl=1.0) as emu, pytest.MonkeyPatch.context():
        client = meterstream.MeterClient(
            api_key=API_KEY,
            api_base=emu.api_base,
            stream_base=emu.stream_base,
            retry_initial_delay=0.005,
            retry_max_delay=0.05,
            flush_interval=0.05,
        )
        sent = 0
        deadline = time.monotonic() + 20
        while client.stats()["sessions_opened"] < 4 and time.monotonic() < deadline:
            record_many(client, 50)
            sent += 50
            assert client.flush(10)
        assert client.stats()["sessions_opened"] >= 4
        assert client.stats()["sent"] == sent
        assert emu.state.total("api_calls", "cus_1").count == sent
        client.shutdown(2)


def test_a_skewed_server_clock_does_not_change_the_refresh(
    make_client: Callable[..., meterstream.MeterClient],
) -> None:
    skewed = lambda: time.time() + 3600.0  # noqa: E731
    with Emulator(auto_create_meters=True, session_ttl=600.0, clock=skewed) as emu:
        client = meterstream.MeterClient(
            api_key=API_KEY,
            api_base=emu.api_base,
            stream_base=emu.stream_base,
            exporter="stripe",
        )
        # Timestamps an hour behind the emulator's clock are within its window.
        record_many(client, 20)
        assert client.flush(10)
        record_many(client, 20)
        assert client.flush(10)
        assert client.stats()["sessions_opened"] == 1
        assert emu.state.total("api_calls", "cus_1").count == 40
        client.shutdown(2)


def test_a_refused_batch_goes_to_on_delivery_error_and_does_not_block_the_next(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    failures: list[tuple[list[dict[str, Any]], BaseException]] = []
    client = make_client(
        batch_size=1, on_delivery_error=lambda events, error: failures.append((events, error))
    )
    client.record("api_calls", 1, customer="cus_1")
    # An event Stripe refuses (its name is over 100 characters): it can only
    # get into the buffer by skipping validation, which is the point here.
    client._buffer.items.append(("x" * 101, "cus_1", 1, time.time(), "bad-1", None))
    client.record("api_calls", 2, customer="cus_1")
    assert client.flush(10)
    assert len(failures) == 1
    events, error = failures[0]
    assert [e["identifier"] for e in events] == ["bad-1"]
    assert isinstance(error, meterstream.DeliveryError)
    assert error.reason == "rejected" and error.status == 400
    stats = client.stats()
    assert stats["failed_rejected"] == 1 and stats["failed"] == 1
    assert stats["sent"] == 2
    assert emulator.state.total("api_calls", "cus_1").count == 2


def test_a_bad_api_key_is_a_clear_delivery_error_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures: list[BaseException] = []
    with Emulator(api_keys={"sk_test_right"}) as emu:
        client = meterstream.MeterClient(
            api_key="sk_test_wrong",
            api_base=emu.api_base,
            stream_base=emu.stream_base,
            on_delivery_error=lambda events, error: failures.append(error),
            batch_size=5,
        )
        with caplog.at_level(logging.ERROR, logger="meterstream"):
            record_many(client, 20)
            assert client.flush(10)  # settled: refused, not pending
        assert len(failures) == 4
        assert all(isinstance(f, meterstream.DeliveryError) for f in failures)
        assert failures[0].reason == "authentication"  # type: ignore[attr-defined]
        assert "secret key" in str(failures[0])
        assert "sk_test_wrong" not in caplog.text
        hints = [r for r in caplog.records if "secret key" in r.getMessage()]
        assert len(hints) == 1
        assert client.stats()["failed_rejected"] == 20
        client.shutdown(1)


def test_should_retry_false_is_not_retried(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    failures: list[BaseException] = []
    client = make_client(on_delivery_error=lambda events, error: failures.append(error))
    emulator.set_faults(fail_500=1.0, should_retry=False)
    record_many(client, 3)
    assert client.flush(10)
    assert client.stats()["retried"] == 0
    assert client.stats()["failed_rejected"] == 3
    assert failures and failures[0].status == 500  # type: ignore[attr-defined]


def test_retry_after_is_honoured(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    # No meters read first: the first attempt must meet the 429 before the timer ends it.
    client = make_client(check_event_names=False)
    emulator.set_faults(fail_429=1.0, retry_after=0.3)
    record_many(client, 3)
    started = time.monotonic()
    threading.Timer(0.05, lambda: emulator.set_faults(fail_429=0.0)).start()
    assert client.flush(10)
    # The first answer said "wait 0.3 s": the retry came no sooner.
    assert time.monotonic() - started >= 0.3
    assert client.stats()["sent"] == 3


def test_out_of_retry_time_is_a_failure_handed_to_the_callback(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    failures: list[BaseException] = []
    client = make_client(
        max_retry_time=0.2, on_delivery_error=lambda events, error: failures.append(error)
    )
    emulator.set_faults(fail_500=1.0)
    record_many(client, 5)
    assert client.flush(10)
    stats = client.stats()
    assert stats["failed_retries_exhausted"] == 5
    assert stats["retried"] >= 1
    assert failures[0].reason == "retries_exhausted"  # type: ignore[attr-defined]
