"""cancel(): queued, sent, too old, unknown, aggregated; durable; the CLI; reconcile."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from typing import Any, Callable

import httpx
import pytest

import meterstream
from helpers.cli import run as cli
from helpers.clients import ClientFactory
from meterstream import CancelError, MeterClient
from meterstream.emulator import Emulator, Total
from meterstream.testing import MeterEvents

KEY = "sk_test_meterstream"


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"auto_create_meters": True}


@pytest.fixture
def client_settings() -> dict[str, Any]:
    return {
        "api_key": KEY,
        "exporter": "stripe",
        "flush_interval": 3600,
        "retry_initial_delay": 0.01,
        "retry_max_delay": 0.05,
    }


@pytest.fixture
def client_for(make_client: ClientFactory) -> Callable[..., MeterClient]:
    def build(emulator: Emulator, **settings: Any) -> MeterClient:
        return make_client(emulator.url, **settings)

    return build


def adjustments(emulator: Emulator) -> dict[str, int]:
    found: dict[str, int] = emulator.state.snapshot()["requests"].get("meter_event_adjustments", {})
    return found


def test_record_returns_the_identifier_it_sent(
    emulator: Emulator, client_for: Callable[..., MeterClient]
) -> None:
    client = client_for(emulator)
    generated = client.record("api", 2, customer="cus_1")
    given = client.record("api", 3, customer="cus_1", identifier="mine-1")
    assert given == "mine-1"
    assert client.flush(5)
    assert isinstance(generated, str)
    assert {e["identifier"] for e in emulator.state.events()} == {generated, "mine-1"}
    client.shutdown(1)


def test_record_returns_none_when_nothing_was_recorded() -> None:
    client = MeterClient(exporter="memory", aggregate={"tokens": "sum"})
    assert client.record("api", "not a number", customer="cus_1") is None
    assert client.record("api", 1) is None  # no customer
    assert client.record("tokens", 5, customer="cus_1") is None  # aggregated
    client.shutdown(1)


def test_a_queued_event_is_withdrawn_without_a_request(
    emulator: Emulator, client_for: Callable[..., MeterClient]
) -> None:
    client = client_for(emulator)
    kept = client.record("api", 3, customer="cus_1")
    gone = client.record("api", 4, customer="cus_1")
    assert client.cancel(gone, "api") == "withdrawn"
    assert client.flush(5)
    assert emulator.state.total("api", "cus_1") == Total(3.0, 1)
    assert [e["identifier"] for e in emulator.state.events()] == [kept]
    assert adjustments(emulator) == {}
    stats = client.stats()
    assert stats["cancels_withdrawn"] == 1 and stats["cancels_sent"] == 0
    client.shutdown(1)


def test_a_sent_event_is_cancelled_at_stripe(
    emulator: Emulator, client_for: Callable[..., MeterClient]
) -> None:
    client = client_for(emulator)
    first = client.record("api", 3, customer="cus_1")
    client.record("api", 4, customer="cus_1")
    assert client.flush(5)
    assert client.cancel(first, "api") == "queued"
    assert client.flush(5)
    assert emulator.state.total("api", "cus_1") == Total(4.0, 1)
    assert client.stats()["cancels_sent"] == 1
    assert client.stats()["cancels_pending"] == 0
    client.shutdown(1)


def test_a_cancellation_is_retried_through_500s(
    emulator: Emulator, client_for: Callable[..., MeterClient]
) -> None:
    client = client_for(emulator)
    ident = client.record("api", 3, customer="cus_1")
    assert client.flush(5)
    emulator.set_faults(fail_500=1.0)
    assert client.cancel(ident, "api") == "queued"
    assert not client.flush(0.3)
    emulator.set_faults(fail_500=0.0)
    assert client.flush(5)
    assert emulator.state.total("api", "cus_1") == Total(0.0, 0)
    assert adjustments(emulator).get("500", 0) >= 1
    client.shutdown(1)


def test_too_old_without_a_spool_comes_back_through_on_delivery_error(
    emulator: Emulator,
    client_for: Callable[..., MeterClient],
) -> None:
    failures: list[tuple[list[dict[str, Any]], Exception]] = []
    client = client_for(emulator, on_delivery_error=lambda e, err: failures.append((e, err)))
    ident = client.record("api", 3, customer="cus_1")
    assert client.flush(5)
    now = time.time()
    emulator.state.clock = lambda: now + 25 * 3600
    assert client.cancel(ident, "api") == "queued"
    assert client.flush(5)
    assert client.stats()["cancels_failed"] == 1
    [(events, error)] = failures
    assert events == [{"type": "cancel", "event_name": "api", "identifier": ident}]
    assert "24 hours" in str(error)
    client.shutdown(1)


def test_with_a_spool_too_old_and_unknown_are_refused_at_the_call(
    emulator: Emulator, client_for: Callable[..., MeterClient], tmp_path: Any
) -> None:
    path = str(tmp_path / "spool.db")
    client = client_for(emulator, spool_path=path, raise_errors=True)
    ident = client.record("api", 3, customer="cus_1")
    assert ident is not None and client.flush(5)
    with pytest.raises(CancelError) as unknown:
        client.cancel("never-recorded", "api")
    assert unknown.value.reason == "unknown"
    with sqlite3.connect(path) as db:  # Stripe accepted it 25 hours ago
        db.execute(
            "UPDATE accepted SET accepted_at = ? WHERE identifier = ?",
            (time.time() - 25 * 3600, ident),
        )
    with pytest.raises(CancelError) as old:
        client.cancel(ident, "api")
    assert old.value.reason == "too_old" and "24 hours" in str(old.value)
    assert client.stats()["cancels_refused"] == 2
    assert adjustments(emulator) == {}
    client.shutdown(1)


def test_refusals_are_counted_not_raised_by_default(tmp_path: Any) -> None:
    client = MeterClient(exporter="memory", spool_path=str(tmp_path / "s.db"))
    assert client.cancel("never-recorded", "api") is None
    assert client.stats()["cancels_refused"] == 1
    client.shutdown(1)


def test_an_aggregated_name_is_refused_naming_the_aggregation() -> None:
    client = MeterClient(exporter="memory", aggregate={"tokens": "sum"}, raise_errors=True)
    with pytest.raises(CancelError) as info:
        client.cancel("anything", "tokens")
    assert info.value.reason == "aggregated" and "aggregate=" in str(info.value)
    client.shutdown(1)


def test_an_exporter_that_cannot_cancel_refuses_delivered_events() -> None:
    client = MeterClient(exporter="none", raise_errors=True, flush_interval=3600)
    waiting = client.record("api", 1, customer="cus_1")
    assert client.cancel(waiting, "api") == "withdrawn"  # never left: any exporter
    sent = client.record("api", 1, customer="cus_1")
    assert client.flush(5)
    with pytest.raises(CancelError) as info:
        client.cancel(sent, "api")
    assert info.value.reason == "unsupported"
    client.shutdown(1)


def test_the_meter_events_fixture_shows_cancellations(meter_events: MeterEvents) -> None:
    kept = meterstream.record("search", customer="cus_1")
    gone = meterstream.record("search", customer="cus_1")
    assert len(meter_events.events) == 2  # flushed: both delivered
    assert meterstream.cancel(gone, "search") == "queued"
    assert meter_events.cancellations == [{"event_name": "search", "identifier": gone}]
    assert meter_events.count("search") == 1
    assert [e["identifier"] for e in meter_events.events] == [kept, gone]


def test_a_cancellation_survives_sigkill_and_is_sent_once(
    emulator: Emulator, client_for: Callable[..., MeterClient], tmp_path: Any
) -> None:
    path = str(tmp_path / "spool.db")
    client = client_for(emulator, spool_path=path)
    ident = client.record("api", 7, customer="cus_9")
    assert ident is not None and client.flush(5)
    client.shutdown(1)
    emulator.set_faults(fail_500=1.0)  # the first process cannot send it
    script = textwrap.dedent(
        f"""
        import os, signal
        from meterstream import MeterClient
        client = MeterClient(api_key={KEY!r}, api_base={emulator.api_base!r},
            stream_base={emulator.stream_base!r}, exporter="stripe", spool_path={path!r},
            raise_errors=True)
        assert client.cancel({ident!r}, "api") == "queued"
        print("cancel recorded", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "cancel recorded" in done.stdout
    assert emulator.state.total("api", "cus_9") == Total(7.0, 1)
    emulator.set_faults(fail_500=0.0)
    before = adjustments(emulator).get("200", 0)
    resumed = client_for(emulator, spool_path=path)
    assert resumed.flush(10)
    assert emulator.state.total("api", "cus_9") == Total(0.0, 0)
    assert adjustments(emulator).get("200", 0) == before + 1
    resumed.shutdown(1)
    again = client_for(emulator, spool_path=path)  # nothing left to send
    assert again.flush(5) and adjustments(emulator).get("200", 0) == before + 1
    again.shutdown(1)


@pytest.mark.slow
def test_an_event_a_process_left_in_its_journal_when_killed_is_withdrawn(
    emulator: Emulator, client_for: Callable[..., MeterClient], tmp_path: Any
) -> None:
    path = str(tmp_path / "spool.db")
    emulator.set_faults(fail_500=1.0)  # nothing leaves the dead process
    live = client_for(emulator, spool_path=path)  # open before the other one dies
    script = textwrap.dedent(
        f"""
        import os, signal
        from meterstream import MeterClient
        client = MeterClient(api_key={KEY!r}, api_base={emulator.api_base!r},
            stream_base={emulator.stream_base!r}, exporter="stripe", spool_path={path!r},
            flush_interval=3600, raise_errors=True)
        client.record("api", 3, customer="cus_k", identifier="kept-1")
        client.record("api", 5, customer="cus_k", identifier="dead-1")
        print("recorded", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "recorded" in done.stdout
    assert live.cancel("dead-1", "api") == "withdrawn"
    emulator.set_faults(fail_500=0.0)
    assert live.flush(10)
    assert [e["identifier"] for e in emulator.state.events("api")] == ["kept-1"]
    assert live.stats()["cancels_withdrawn"] == 1
    live.shutdown(1)
    again = client_for(emulator, spool_path=path)  # nothing left: dead-1 stays withdrawn
    assert again.flush(5)
    assert [e["identifier"] for e in emulator.state.events("api")] == ["kept-1"]
    again.shutdown(1)


def test_the_cli_cancels_a_range_and_reconcile_agrees(
    emulator: Emulator, client_for: Callable[..., MeterClient], tmp_path: Any
) -> None:
    path = str(tmp_path / "spool.db")
    hour = int(time.time()) // 3600 * 3600 - 3600
    client = client_for(emulator, spool_path=path)
    for n in range(6):  # a double count in the past hour: three to take back
        client.record("api", 2, customer="cus_r", timestamp=hour + 60 + n)
    client.record("api", 5, customer="cus_other", timestamp=hour + 60)
    assert client.flush(5)
    client.shutdown(1)
    common = ["--spool", path, "--base", emulator.url, "--api-key", KEY]
    window = ["--customer", "cus_r", "--event", "api", "--since", str(hour + 63)]
    window += ["--until", str(hour + 3600)]
    dry = cli("cancel", *common, *window, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "3 events to cancel" in dry.stdout
    asked = cli("cancel", *common, *window)
    assert asked.returncode == 1 and "--yes" in asked.stdout
    assert emulator.state.total("api", "cus_r") == Total(12.0, 6)
    done = cli("cancel", *common, *window, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cancelled 3 at Stripe" in done.stdout
    assert emulator.state.total("api", "cus_r") == Total(6.0, 3)
    assert emulator.state.total("api", "cus_other") == Total(5.0, 1)
    recon = cli(
        "reconcile",
        *common,
        "--since",
        str(hour),
        "--until",
        str(hour + 3600),
        "--window",
        "hour",
        "--grace",
        "0",
    )
    assert recon.returncode == 0, recon.stdout + recon.stderr


def test_the_cli_cancels_one_by_identifier(
    emulator: Emulator, client_for: Callable[..., MeterClient], tmp_path: Any
) -> None:
    path = str(tmp_path / "spool.db")
    client = client_for(emulator, spool_path=path)
    ident = client.record("api", 2, customer="cus_1")
    assert ident is not None and client.flush(5)
    client.shutdown(1)
    common = ["--spool", path, "--base", emulator.url, "--api-key", KEY]
    done = cli("cancel", *common, "--event", "api", "--identifier", ident, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert emulator.state.total("api", "cus_1") == Total(0.0, 0)
    missing = cli("cancel", *common, "--event", "api", "--identifier", "nope", "--yes")
    assert missing.returncode == 1 and "no accepted" in missing.stdout


def test_stripe_python_cancels_through_the_emulator(
    emulator: Emulator, client_for: Callable[..., MeterClient]
) -> None:
    stripe = pytest.importorskip("stripe")
    client = client_for(emulator)
    ident = client.record("api", 3, customer="cus_sp")
    assert ident is not None and client.flush(5)
    sdk = stripe.StripeClient(KEY, base_addresses={"api": emulator.url})
    adjustment = sdk.v2.billing.meter_event_adjustments.create(
        {"event_name": "api", "type": "cancel", "cancel": {"identifier": ident}}
    )
    assert adjustment.object == "v2.billing.meter_event_adjustment"
    assert adjustment.cancel.identifier == ident and adjustment.type == "cancel"
    assert emulator.state.total("api", "cus_sp") == Total(0.0, 0)
    assert httpx.get(emulator.url + "/_emulator/state").json()["cancelled"] == 1
    client.shutdown(1)


def test_metering_gives_the_identifier_after_the_block(
    emulator: Emulator, client_for: Callable[..., MeterClient]
) -> None:
    client = client_for(emulator)
    with client.metering("gpu", customer="cus_m") as usage:
        assert usage.identifier is None
        usage.value = 4
    assert usage.identifier is not None
    assert client.flush(5)
    assert client.cancel(usage.identifier, "gpu") == "queued"
    assert client.flush(5)
    assert emulator.state.total("gpu", "cus_m") == Total(0.0, 0)
    client.shutdown(1)
