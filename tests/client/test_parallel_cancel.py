"""cancel() in a parallel run: at every destination that received or holds the event."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Optional

import pytest

import meterstream
from helpers.cli import run as cli
from helpers.clients import PARALLEL_KEY, PARALLEL_TOKEN, ClientFactory, parallel_settings
from meterstream import CancelError, MeterClient
from meterstream.emulator import Emulator, Total
from meterstream.testing import MeterEvents

KEY = PARALLEL_KEY
TOKEN = PARALLEL_TOKEN


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"auto_create_meters": True}


@pytest.fixture
def client_settings(emulator: Emulator) -> dict[str, Any]:
    return parallel_settings(
        emulator.url,
        flush_interval=3600,  # nothing leaves before a flush
        retry_initial_delay=0.01,
        retry_max_delay=0.05,
    )


@pytest.fixture(params=["memory", "spool"])
def spool_path(request: pytest.FixtureRequest, tmp_path: Path) -> Optional[str]:
    return None if request.param == "memory" else str(tmp_path / "meter.db")


def adjustments(emulator: Emulator) -> dict[str, int]:
    found: dict[str, int] = emulator.state.snapshot()["requests"].get("meter_event_adjustments", {})
    return found


def metronome_ids(emulator: Emulator) -> list[str]:
    return [e["transaction_id"] for e in emulator.state.metronome.events()]


def cancel_counts(client: MeterClient, destination: str) -> dict[str, int]:
    counts = client.stats()["destinations"][destination]
    return {key: value for key, value in counts.items() if key.startswith("cancels_") and value}


def test_record_and_metering_give_the_identifier_both_destinations_got(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client()
    ident = client.record("api", 2, customer="cus_1")
    with client.metering("gpu", customer="cus_1") as usage:
        usage.value = 3
    assert isinstance(ident, str) and isinstance(usage.identifier, str)
    assert client.flush(5)
    stripe = [e["identifier"] for e in emulator.state.events()]
    assert stripe == [ident, usage.identifier] == metronome_ids(emulator)


def test_pending_at_both_is_withdrawn_at_both_without_a_request(
    emulator: Emulator, make_client: ClientFactory, spool_path: Optional[str]
) -> None:
    client = make_client(spool_path=spool_path, raise_errors=True)
    kept = client.record("api", 3, customer="cus_1")
    gone = client.record("api", 4, customer="cus_1")
    assert client.cancel(gone, "api") == "withdrawn"
    assert client.flush(5)
    assert emulator.state.total("api", "cus_1") == Total(3.0, 1)
    assert metronome_ids(emulator) == [kept]
    assert adjustments(emulator) == {}
    for destination in ("stripe", "metronome"):
        assert cancel_counts(client, destination) == {"cancels_withdrawn": 1}


def test_accepted_at_both_cancels_at_stripe_and_refuses_naming_metronome(
    emulator: Emulator, make_client: ClientFactory, spool_path: Optional[str]
) -> None:
    client = make_client(spool_path=spool_path, raise_errors=True)
    ident = client.record("api", 5, customer="cus_1")
    assert ident is not None and client.flush(5)
    with pytest.raises(CancelError) as info:
        client.cancel(ident, "api")
    error = info.value
    assert error.reason == "unsupported"
    assert error.outcomes == {"stripe": "queued", "metronome": "refused"}
    assert list(error.refusals) == ["metronome"]
    message = str(error)
    assert "queued at stripe" in message and "metronome:" in message
    assert "negating use" in message and "transaction_id" in message
    assert client.flush(5)  # Stripe's cancellation went ahead
    assert emulator.state.total("api", "cus_1") == Total(0.0, 0)
    assert metronome_ids(emulator) == [ident]  # still billed there
    assert cancel_counts(client, "stripe") == {"cancels_sent": 1}
    assert cancel_counts(client, "metronome") == {"cancels_refused": 1}
    assert client.stats()["cancels_refused"] == 1


def test_without_raise_errors_a_partial_cancel_is_logged_and_handed_to_on_delivery_error(
    emulator: Emulator,
    make_client: ClientFactory,
    spool_path: Optional[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures: list[tuple[list[dict[str, Any]], BaseException]] = []
    client = make_client(
        spool_path=spool_path, on_delivery_error=lambda e, err: failures.append((e, err))
    )
    ident = client.record("api", 5, customer="cus_1")
    assert ident is not None and client.flush(5)
    with caplog.at_level(logging.WARNING, logger="meterstream"):
        assert client.cancel(ident, "api") is None
    assert "cancel() refused" in caplog.text and "Metronome cannot cancel" in caplog.text
    [(events, error)] = failures
    assert events == [
        {"type": "cancel", "event_name": "api", "identifier": ident, "destination": "metronome"}
    ]
    assert isinstance(error, CancelError)
    assert error.outcomes == {"stripe": "queued", "metronome": "refused"}
    assert client.flush(5)
    assert emulator.state.total("api", "cus_1") == Total(0.0, 0)
    assert cancel_counts(client, "stripe") == {"cancels_sent": 1}
    assert cancel_counts(client, "metronome") == {"cancels_refused": 1}


def test_accepted_at_stripe_and_pending_at_metronome(
    emulator: Emulator, make_client: ClientFactory, spool_path: Optional[str]
) -> None:
    client = make_client(spool_path=spool_path, raise_errors=True)
    ident = client.record("api", 6, customer="cus_1")
    assert ident is not None and client.destinations["stripe"].flush(5)
    assert metronome_ids(emulator) == []  # still waiting in Metronome's lane
    assert client.cancel(ident, "api") == "queued"
    assert client.flush(5)
    assert emulator.state.total("api", "cus_1") == Total(0.0, 0)
    assert adjustments(emulator) == {"200": 1}
    assert metronome_ids(emulator) == []  # withdrawn: never sent
    assert cancel_counts(client, "stripe") == {"cancels_sent": 1}
    assert cancel_counts(client, "metronome") == {"cancels_withdrawn": 1}


def test_an_identifier_no_destination_knows_is_the_unknown_refusal(
    emulator: Emulator, make_client: ClientFactory, tmp_path: Path
) -> None:
    client = make_client(spool_path=str(tmp_path / "meter.db"), raise_errors=True)
    client.record("api", 1, customer="cus_1")
    assert client.flush(5)
    with pytest.raises(CancelError) as info:
        client.cancel("never-recorded", "api")
    assert info.value.reason == "unknown"
    assert "meter.db" in str(info.value) and "meter.metronome.db" in str(info.value)
    assert adjustments(emulator) == {}
    for destination in ("stripe", "metronome"):
        assert cancel_counts(client, destination) == {"cancels_refused": 1}
    quiet = make_client(spool_path=str(tmp_path / "meter.db"))
    assert quiet.cancel("never-recorded", "api") is None


def test_an_event_only_stripe_received_is_cancelled_there_alone(
    emulator: Emulator, make_client: ClientFactory, tmp_path: Path
) -> None:
    path = str(tmp_path / "meter.db")
    before = make_client(destinations=(), exporter="stripe", spool_path=path)
    ident = before.record("api", 4, customer="cus_1")  # before Metronome was added
    assert ident is not None and before.flush(5)
    before.shutdown(1)
    client = make_client(spool_path=path, raise_errors=True)
    assert client.cancel(ident, "api") == "queued"
    assert client.flush(5)
    assert emulator.state.total("api", "cus_1") == Total(0.0, 0)
    assert cancel_counts(client, "stripe") == {"cancels_sent": 1}
    assert cancel_counts(client, "metronome") == {}  # not refused: it never had it


def test_a_parallel_cancellation_survives_sigkill_and_happens_once_at_stripe(
    emulator: Emulator, make_client: ClientFactory, tmp_path: Path
) -> None:
    path = str(tmp_path / "meter.db")
    script = textwrap.dedent(
        f"""
        import os, signal, httpx
        from meterstream import MeterClient
        client = MeterClient(destinations=["stripe", "metronome"], api_key={KEY!r},
            api_base={emulator.url!r}, stream_base={emulator.url!r},
            metronome_api_key={TOKEN!r}, metronome_base={emulator.url!r},
            spool_path={path!r}, flush_interval=3600, raise_errors=True)
        ident = client.record("api", 7, customer="cus_9")
        assert client.destinations["stripe"].flush(5)
        # Stripe now refuses everything: the adjustment cannot be sent.
        httpx.post({emulator.url!r} + "/_emulator/faults",
                   json={{"fail_500": 1.0, "side": "stripe"}}).raise_for_status()
        assert client.cancel(ident, "api") == "queued"
        print(ident, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    ident = done.stdout.strip()
    assert emulator.state.total("api", "cus_9") == Total(7.0, 1)
    assert adjustments(emulator).get("200", 0) == 0
    emulator.set_faults(fail_500=0.0, side="both")
    resumed = make_client(spool_path=path)
    assert resumed.flush(10)
    assert emulator.state.total("api", "cus_9") == Total(0.0, 0)
    assert adjustments(emulator).get("200", 0) == 1
    assert metronome_ids(emulator) == []  # withdrawn before the kill: never sent
    resumed.shutdown(1)
    again = make_client(spool_path=path)  # nothing left to send
    assert again.flush(5)
    assert adjustments(emulator).get("200", 0) == 1 and metronome_ids(emulator) == []
    assert ident


def test_the_cli_cancels_a_range_at_each_destination_of_a_parallel_run(
    emulator: Emulator, make_client: ClientFactory, tmp_path: Path
) -> None:
    path = str(tmp_path / "meter.db")
    hour = int(time.time()) // 3600 * 3600 - 3600
    client = make_client(spool_path=path)
    sent = [client.record("api", 2, customer="cus_r", timestamp=hour + 60 + n) for n in range(2)]
    assert client.flush(5)  # accepted at both
    waiting = [client.record("api", 2, customer="cus_r", timestamp=hour + 70 + n) for n in range(2)]
    assert client.destinations["stripe"].flush(5)  # accepted at Stripe, waiting for Metronome
    assert emulator.state.total("api", "cus_r") == Total(8.0, 4)
    assert metronome_ids(emulator) == sent
    common = ["--spool", path, "--base", emulator.url, "--api-key", KEY, "--event", "api"]
    common += ["--customer", "cus_r", "--since", str(hour), "--until", str(hour + 3600)]
    alone = cli("cancel", *common, "--dry-run")
    assert alone.returncode == 0 and "meter.metronome.db exists" in alone.stderr
    dry = cli("cancel", *common, "--destinations", "stripe,metronome", "--dry-run")
    assert dry.returncode == 1, dry.stdout + dry.stderr  # two cannot be cancelled at Metronome
    lines = dry.stdout.splitlines()
    assert f"{sent[0]}" in lines[0] and "stripe: to cancel  metronome: cannot cancel" in lines[0]
    assert "stripe: to cancel  metronome: to withdraw" in lines[2]
    assert "stripe: 4 events to cancel" in dry.stdout
    assert "metronome: 2 events to withdraw, 2 accepted there, which Metronome cannot" in dry.stdout
    assert "negating use" in dry.stdout
    done = cli("cancel", *common, "--destinations", "stripe,metronome", "--yes")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "stripe: cancelled 4 at Stripe" in done.stdout
    assert "metronome: withdrawn 2 before sending" in done.stdout
    assert emulator.state.total("api", "cus_r") == Total(0.0, 0)
    assert client.flush(5)  # the live client has nothing left for Metronome
    assert metronome_ids(emulator) == sent
    again = cli("cancel", *common, "--destinations", "stripe,metronome", "--dry-run")
    assert "stripe: 0 events to cancel" in again.stdout, again.stdout
    assert waiting[0] not in again.stdout


def test_the_cli_withdraws_one_still_waiting_at_metronome_without_its_token(
    emulator: Emulator, make_client: ClientFactory, tmp_path: Path
) -> None:
    path = str(tmp_path / "meter.db")
    client = make_client(spool_path=path)
    ident = client.record("api", 3, customer="cus_1")
    assert ident is not None and client.destinations["stripe"].flush(5)
    args = ["--spool", path, "--base", emulator.url, "--api-key", KEY, "--event", "api"]
    done = cli(
        "cancel", *args, "--identifier", ident, "--destinations", "stripe,metronome", "--yes"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stripe: to cancel  metronome: to withdraw" in done.stdout
    assert emulator.state.total("api", "cus_1") == Total(0.0, 0)
    assert client.flush(5) and metronome_ids(emulator) == []
    missing = cli("cancel", *args, "--identifier", "nope", "--destinations", "stripe,metronome")
    assert missing.returncode == 1 and "no accepted or waiting" in missing.stdout
    bad = cli("cancel", *args, "--identifier", ident, "--destinations", "stripe,orb")
    assert bad.returncode == 2 and "--destinations" in bad.stderr


def test_metronome_refuses_an_old_event_as_unsupported_not_too_old(
    emulator: Emulator, make_client: ClientFactory, tmp_path: Path
) -> None:
    path = str(tmp_path / "meter.metronome.db")
    client = make_client(destinations=(), exporter="metronome", spool_path=path)
    ident = client.record("api", 1, customer="cus_1")
    assert ident is not None and client.flush(5)
    assert client.spool is not None
    client.spool.catch_up_history()  # the accepted batches logged: into the table changed here
    with sqlite3.connect(path) as db:  # Metronome accepted it 25 hours ago
        db.execute("UPDATE accepted SET accepted_at = ?", (time.time() - 25 * 3600,))
    failures: list[Any] = []
    strict = make_client(
        destinations=(),
        exporter="metronome",
        spool_path=path,
        raise_errors=True,
        on_delivery_error=lambda e, err: failures.append(err),
    )
    with pytest.raises(CancelError) as info:
        strict.cancel(ident, "api")
    assert info.value.reason == "unsupported" and "Stripe" not in str(info.value)
    assert "Metronome cannot cancel" in str(info.value) and failures == []


@pytest.mark.meter_events(destinations=["stripe", "metronome"])
def test_the_meter_events_fixture_refuses_at_metronome_as_metronome_would(
    meter_events: MeterEvents,
) -> None:
    waiting = meterstream.record("api", 1, customer="cus_1")
    assert meterstream.cancel(waiting, "api") == "withdrawn"  # at both: never sent
    sent = meterstream.record("api", 2, customer="cus_1")
    assert len(meter_events.events) == 1  # flushed: delivered at both
    assert meterstream.cancel(sent, "api") is None  # refused at Metronome, logged
    stripe, metronome = meter_events.destinations["stripe"], meter_events.destinations["metronome"]
    assert stripe.cancellations == [{"event_name": "api", "identifier": sent}]
    assert stripe.count("api") == 0
    assert metronome.cancellations == [] and metronome.count("api") == 1


def test_cancelling_a_withdrawn_event_again_is_the_same_withdrawal(
    emulator: Emulator, make_client: ClientFactory, spool_path: Optional[str]
) -> None:
    client = make_client(spool_path=spool_path, raise_errors=True)
    ident = client.record("api", 1, customer="cus_1")
    assert client.cancel(ident, "api") == "withdrawn"
    assert client.cancel(ident, "api") == "withdrawn"  # not an unknown identifier
    single = client.destinations["stripe"]
    other = single.record("api", 1, customer="cus_1")  # at Stripe's lane alone
    assert single.cancel(other, "api") == "withdrawn"
    assert single.cancel(other, "api") == "withdrawn"
    assert client.flush(5)
    assert emulator.state.events() == [] and metronome_ids(emulator) == []
    assert cancel_counts(client, "stripe") == {"cancels_withdrawn": 2}
    assert cancel_counts(client, "metronome") == {"cancels_withdrawn": 1}
