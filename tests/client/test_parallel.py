"""destinations=["stripe", "metronome"]: one use, one delivery per destination, independent."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import meterstream
import meterstream.testing
from helpers.clients import ClientFactory, parallel_settings
from helpers.poll import wait_for
from meterstream._client.parallel import ParallelClient, lane_spool_path
from meterstream.emulator import Emulator
from meterstream.errors import ConfigurationError

FAST: dict[str, Any] = {
    "retry_initial_delay": 0.005,
    "retry_max_delay": 0.05,
    "flush_interval": 0.01,
}


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"auto_create_meters": True}


@pytest.fixture
def client_settings(emulator: Emulator) -> dict[str, Any]:
    return parallel_settings(emulator.url, **FAST)


def _stripe_ids(emulator: Emulator) -> list[str]:
    return [e["identifier"] for e in emulator.state.events()]


def _metronome_ids(emulator: Emulator) -> list[str]:
    return [e["transaction_id"] for e in emulator.state.metronome.events()]


def test_each_use_reaches_both_with_one_identifier_and_one_time(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client()
    assert isinstance(client, ParallelClient)
    client.record("api_calls", 3, customer="cus_1", identifier="req-1")
    client.record("api_calls", 2, customer="cus_1")
    with client.customer("cus_2"):
        client.record("api_calls", 1)
    assert client.flush(5)
    stripe = emulator.state.events()
    metronome = emulator.state.metronome.events()
    assert [e["identifier"] for e in stripe] == [e["transaction_id"] for e in metronome]
    assert stripe[0]["identifier"] == "req-1"
    assert [e["customer"] for e in stripe] == ["cus_1", "cus_1", "cus_2"]
    assert [e["customer_id"] for e in metronome] == ["cus_1", "cus_1", "cus_2"]
    assert [e["timestamp"][:19] for e in stripe] == [e["timestamp"][:19] for e in metronome]
    stats = client.stats()
    assert stats["destinations"]["stripe"]["sent"] == 3
    assert stats["destinations"]["metronome"]["sent"] == 3
    assert stats["sent"] == 6  # the sum over the destinations
    assert stats["recorded"] == 6


def test_decorators_and_blocks_record_at_both(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client()

    @client.meter("searches")
    def search() -> str:
        return "ok"

    @client.meter("tokens", value=lambda call: call.result)
    def tokens() -> int:
        return 40

    with client.customer("cus_1"):
        search()
        tokens()
        with client.metering("gpu_seconds") as usage:
            usage.value = 1.5
    assert client.flush(5)
    assert sorted(_stripe_ids(emulator)) == sorted(_metronome_ids(emulator))
    names = sorted(e["event_type"] for e in emulator.state.metronome.events())
    assert names == ["gpu_seconds", "searches", "tokens"]


def test_an_outage_at_stripe_neither_delays_nor_duplicates_metronome(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    emulator.set_faults(fail_500=1.0, side="stripe")
    client = make_client(max_retry_time=30)
    for i in range(20):
        client.record("api_calls", 1, customer="cus_1", identifier=f"ev-{i}")
    metronome = client.destinations["metronome"]
    assert metronome.flush(5)  # Stripe's lane is still retrying
    assert _metronome_ids(emulator) == [f"ev-{i}" for i in range(20)]
    assert _stripe_ids(emulator) == []
    assert client.stats()["destinations"]["stripe"]["queued"] == 20
    emulator.set_faults(fail_500=0.0)
    assert client.flush(10)
    assert sorted(_stripe_ids(emulator)) == sorted(f"ev-{i}" for i in range(20))
    assert len(_metronome_ids(emulator)) == 20  # nothing sent twice
    assert client.stats()["destinations"]["metronome"]["retried"] == 0


def test_an_outage_at_metronome_neither_delays_nor_duplicates_stripe(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    emulator.set_faults(fail_500=1.0, side="metronome")
    client = make_client(max_retry_time=30)
    for i in range(20):
        client.record("api_calls", 1, customer="cus_1", identifier=f"ev-{i}")
    assert client.destinations["stripe"].flush(5)
    # Sorted: concurrent senders keep no order between batches.
    assert sorted(_stripe_ids(emulator)) == sorted(f"ev-{i}" for i in range(20))
    assert _metronome_ids(emulator) == []
    emulator.set_faults(fail_500=0.0)
    assert client.flush(10)
    assert sorted(_metronome_ids(emulator)) == sorted(f"ev-{i}" for i in range(20))
    assert len(_stripe_ids(emulator)) == 20


def test_a_400_at_one_destination_refuses_the_event_there_only(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    emulator.set_faults(reject_identifier="ev-3", side="metronome")
    refused: list[Any] = []
    client = make_client(on_delivery_error=lambda error, events: refused.append(events))
    for i in range(6):
        client.record("api_calls", 1, customer="cus_1", identifier=f"ev-{i}")
    assert client.flush(5)
    assert sorted(_stripe_ids(emulator)) == sorted(f"ev-{i}" for i in range(6))
    assert sorted(_metronome_ids(emulator)) == sorted(f"ev-{i}" for i in range(6) if i != 3)
    stats = client.stats()["destinations"]
    assert stats["stripe"]["failed"] == 0
    assert stats["metronome"]["failed_rejected"] == 1
    assert len(refused) == 1


def test_a_hung_destination_does_not_hold_flush_of_the_other(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    emulator.set_faults(hang=True, side="stripe")
    client = make_client(request_timeout=30)
    client.record("api_calls", 1, customer="cus_1", identifier="ev-1")
    assert client.destinations["metronome"].flush(5)
    assert not client.flush(0.2)  # Stripe's lane is stuck; the call still returns
    emulator.set_faults(hang=False)
    assert client.flush(10)
    assert _stripe_ids(emulator) == ["ev-1"]


def test_sync_mode_sends_to_both_before_record_returns(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(sync_mode=True)
    client.record("api_calls", 1, customer="cus_1", identifier="ev-1")
    assert _stripe_ids(emulator) == ["ev-1"]
    assert _metronome_ids(emulator) == ["ev-1"]


def test_aggregation_at_both(emulator: Emulator, make_client: ClientFactory) -> None:
    # A sum meter before the client: the Stripe lane's meter check keeps it aggregated.
    form = {"display_name": "tokens", "event_name": "tokens", "default_aggregation[formula]": "sum"}
    emulator.state.create_meter(form)
    client = make_client(aggregate={"tokens": "sum"}, aggregation_window=60)
    for _ in range(10):
        client.record("tokens", 5, customer="cus_1")
    assert client.flush(5)
    assert [e["value"] for e in emulator.state.events()] == [50]
    [event] = emulator.state.metronome.events()
    assert event["properties"] == {"value": "50"}
    stats = client.stats()["destinations"]
    assert stats["stripe"]["sent"] == stats["metronome"]["sent"] == 1


def test_one_spool_per_destination(
    emulator: Emulator, make_client: ClientFactory, tmp_path: Path
) -> None:
    path = str(tmp_path / "meter.db")
    assert lane_spool_path(path, ("stripe", "metronome"), "stripe") == path
    assert lane_spool_path(path, ("stripe", "metronome"), "metronome") == str(
        tmp_path / "meter.metronome.db"
    )
    emulator.set_faults(fail_500=1.0, side="metronome")
    client = make_client(spool_path=path, max_retry_time=30)
    for i in range(5):
        client.record("api_calls", 1, customer="cus_1", identifier=f"ev-{i}")
    assert client.destinations["stripe"].flush(5)
    stats = client.stats()["destinations"]
    assert stats["stripe"]["spool_pending"] == 0
    assert stats["metronome"]["spool_pending"] == 5
    assert client.destinations["metronome"].spool is not None
    assert client.destinations["metronome"].spool.path == str(tmp_path / "meter.metronome.db")
    client.shutdown(0.2)
    emulator.set_faults(fail_500=0.0)
    # A restart: the Metronome spool's events are delivered, Stripe's not again.
    again = make_client(spool_path=path)
    assert again.flush(10)
    assert sorted(_metronome_ids(emulator)) == [f"ev-{i}" for i in range(5)]
    assert sorted(_stripe_ids(emulator)) == [f"ev-{i}" for i in range(5)]


def test_auto_spool_path_derives_each_destinations_spool_and_journal(
    emulator: Emulator,
    make_client: ClientFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    client = make_client(spool_path="auto", spool_app="shop")
    spools = {name: lane.spool for name, lane in client.destinations.items()}
    assert spools["stripe"] is not None and spools["metronome"] is not None
    home = tmp_path / "state" / "meterstream" / "shop"
    assert spools["stripe"].path == str(home / "spool.db")
    assert spools["metronome"].path == str(home / "spool.metronome.db")
    assert spools["stripe"].journal.directory == str(home / "spool.db.journal")
    assert spools["metronome"].journal.directory == str(home / "spool.metronome.db.journal")
    client.record("api_calls", 1, customer="cus_1", identifier="auto-1")
    assert client.flush(10)
    assert _stripe_ids(emulator) == _metronome_ids(emulator) == ["auto-1"]
    assert not list(tmp_path.glob("auto*"))  # nothing named after the word itself


def test_configuration() -> None:
    with pytest.raises(ConfigurationError, match="contradicts destinations"):
        meterstream.MeterClient(
            destinations=["stripe", "metronome"], exporter="stripe", api_key="sk_test_x"
        )
    with pytest.raises(ConfigurationError, match="named twice"):
        meterstream.MeterClient(destinations=["metronome", "metronome"])
    with pytest.raises(ConfigurationError, match="unknown destination"):
        meterstream.MeterClient(destinations=["stripe", "orb"])
    with pytest.raises(ConfigurationError, match="needs an api_key"):
        meterstream.MeterClient(destinations=["stripe", "metronome"])
    single = meterstream.MeterClient(destinations=["memory"])
    assert type(single) is meterstream.MeterClient
    assert single.settings.exporter == "memory"
    single.shutdown(0)


def test_destinations_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERSTREAM_DESTINATIONS", "stripe,metronome")
    client = meterstream.MeterClient(exporter="memory")
    try:
        assert isinstance(client, ParallelClient)
        assert list(client.destinations) == ["stripe", "metronome"]
        client.record("api_calls", 1, customer="cus_1")
        assert client.flush(1)
        assert client.stats()["destinations"]["metronome"]["memory"] == 1
    finally:
        client.shutdown(0)


def test_raise_errors_raises_once_and_records_nowhere() -> None:
    client = meterstream.MeterClient(
        destinations=["stripe", "metronome"], exporter="memory", raise_errors=True
    )
    try:
        with pytest.raises(meterstream.InvalidEventError):
            client.record("api_calls", "lots", customer="cus_1")
        assert client.flush(1)
        assert client.stats()["recorded"] == 0
    finally:
        client.shutdown(0)


def test_concurrent_records_reach_both_exactly_once() -> None:
    client = meterstream.MeterClient(destinations=["stripe", "metronome"], exporter="memory")
    try:

        def work(n: int) -> None:
            for i in range(200):
                client.record("api_calls", 1, customer="cus_1", identifier=f"t{n}-{i}")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert client.flush(5)
        for lane in client.destinations.values():
            ids = [e["identifier"] for e in lane.exporter.events]  # type: ignore[attr-defined]
            assert len(ids) == len(set(ids)) == 800
        assert wait_for(lambda: client.stats()["memory"] == 1600)
    finally:
        client.shutdown(0)


@pytest.mark.meter_events(destinations=["stripe", "metronome"])
def test_the_meter_events_fixture_shows_each_destination(
    meter_events: meterstream.testing.MeterEvents,
) -> None:
    with meterstream.customer("cus_1"):
        meterstream.record("api_calls", 2)
    meter_events.assert_recorded("api_calls", customer="cus_1", value=2)
    for name in ("stripe", "metronome"):
        meter_events.destinations[name].assert_recorded("api_calls", customer="cus_1", value=2)
    stripe_ids = [e["identifier"] for e in meter_events.destinations["stripe"].events]
    metronome_ids = [e["identifier"] for e in meter_events.destinations["metronome"].events]
    assert stripe_ids == metronome_ids
