"""exporter="metronome": recorded uses reach Metronome's /v1/ingest (the emulator's)."""

from __future__ import annotations

import time
from typing import Any

import pytest

import meterstream
from meterstream._config.settings import Settings
from meterstream._exporters.metronome import MetronomeExporter
from meterstream._exporters.metronome._errors import retry_after, retryable, should_retry
from meterstream.emulator import Emulator

TOKEN = "mt_secret_token_123"
FAST: dict[str, Any] = {"retry_initial_delay": 0.005, "retry_max_delay": 0.05}


def _client(emulator: Emulator, **settings: Any) -> meterstream.MeterClient:
    options: dict[str, Any] = {
        "metronome_api_key": TOKEN,
        "metronome_base": emulator.url,
        **FAST,
        **settings,
    }
    exporter = MetronomeExporter(Settings.resolve(options))
    return meterstream.MeterClient(exporter=exporter, **{**FAST, **settings})


def test_each_use_is_one_usage_event_with_our_identifier_as_transaction_id(
    emulator: Emulator,
) -> None:
    client = _client(emulator)
    client.record("llm_tokens", 25, customer="cus_1", identifier="req-1")
    client.record("llm_tokens", 0.5, customer="cus_1", dimensions={"model": "gpt"})
    assert client.flush(5)
    client.shutdown(1)
    events = emulator.state.metronome.events()
    assert [e["event_type"] for e in events] == ["llm_tokens", "llm_tokens"]
    assert events[0]["transaction_id"] == "req-1"
    assert events[1]["transaction_id"].startswith("ms_")
    assert events[0]["customer_id"] == "cus_1"
    assert events[0]["properties"] == {"value": "25"}
    assert events[1]["properties"] == {"value": "0.5", "model": "gpt"}
    assert client.stats()["sent"] == 2


def test_the_value_key_is_configurable_per_event_name(emulator: Emulator) -> None:
    client = _client(emulator, metronome_value_keys={"llm_tokens": "tokens"})
    client.record("llm_tokens", 7, customer="cus_1")
    client.record("api_calls", 1, customer="cus_1")
    assert client.flush(5)
    client.shutdown(1)
    props = {e["event_type"]: e["properties"] for e in emulator.state.metronome.events()}
    assert props == {"llm_tokens": {"tokens": "7"}, "api_calls": {"value": "1"}}


def test_an_outage_is_retried_and_each_event_arrives_once(emulator: Emulator) -> None:
    emulator.set_faults(fail_500=1.0)
    client = _client(emulator)
    for i in range(5):
        client.record("api_calls", 1, customer="cus_1", identifier=f"o{i}")
    assert not client.flush(0.3)
    emulator.set_faults(fail_500=0.0)
    assert client.flush(5)
    client.shutdown(1)
    assert emulator.state.metronome.transaction_ids() == {f"o{i}" for i in range(5)}
    assert client.stats()["retried"] >= 1


def test_a_refused_event_is_isolated_and_the_rest_are_sent(emulator: Emulator) -> None:
    refused: list[tuple[BaseException, list[dict[str, Any]]]] = []
    emulator.set_faults(reject_identifier="bad")
    client = _client(emulator, on_delivery_error=lambda events, exc: refused.append((exc, events)))
    for ident in ("a", "b", "bad", "c", "d"):
        client.record("api_calls", 1, customer="cus_1", identifier=ident)
    assert client.flush(5)
    client.shutdown(1)
    assert emulator.state.metronome.transaction_ids() == {"a", "b", "c", "d"}
    assert [[e["identifier"] for e in events] for _, events in refused] == [["bad"]]
    assert "Metronome refused 1 usage event" in str(refused[0][0])
    assert client.stats()["failed"] == 1


def test_an_event_past_metronomes_34_days_is_set_aside_before_sending(
    emulator: Emulator,
) -> None:
    refused: list[list[dict[str, Any]]] = []
    client = _client(emulator, on_delivery_error=lambda events, exc: refused.append(events))
    client.record(
        "api_calls", 1, customer="cus_1", identifier="old", timestamp=time.time() - 34.5 * 86400
    )
    client.record("api_calls", 1, customer="cus_1", identifier="new")
    assert client.flush(5)
    client.shutdown(1)
    assert emulator.state.metronome.transaction_ids() == {"new"}
    assert [[e["identifier"] for e in events] for events in refused] == [["old"]]


def test_a_wrong_token_is_refused_and_never_shown(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.state.metronome.tokens = {"the-right-one"}
    errors: list[BaseException] = []
    client = _client(emulator, on_delivery_error=lambda events, exc: errors.append(exc))
    client.record("api_calls", 1, customer="cus_1")
    assert client.flush(5)
    client.shutdown(1)
    assert "metronome_api_key" in str(errors[0])
    assert TOKEN not in str(errors[0]) and TOKEN not in caplog.text
    assert TOKEN not in repr(Settings.resolve({"metronome_api_key": TOKEN}))


def test_the_token_is_read_from_the_sdks_environment_variable() -> None:
    settings = Settings.resolve({}, environ={"METRONOME_BEARER_TOKEN": "from-env"})
    assert settings.metronome_api_key == "from-env"
    settings = Settings.resolve({}, environ={"METRONOME_API_KEY": "other"})
    assert settings.metronome_api_key == "other"


def test_retry_headers_are_read_as_the_official_sdk_reads_them() -> None:
    assert retry_after({"retry-after-ms": "50", "retry-after": "9"}) == 0.05
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({}) is None
    assert should_retry({"x-should-retry": "false"}) is False
    assert retryable(500, False) is False
    assert retryable(400, True) is True
    assert [s for s in (400, 404, 408, 409, 422, 429, 500, 503) if retryable(s, None)] == [
        408,
        409,
        429,
        500,
        503,
    ]


def test_the_servers_wait_is_honoured(emulator: Emulator) -> None:
    emulator.set_faults(fail_429=1.0, retry_after=0.2)
    client = _client(emulator)
    client.record("api_calls", 1, customer="cus_1", identifier="w")
    deadline = time.monotonic() + 5
    while not emulator.state.requests.get("metronome.ingest") and time.monotonic() < deadline:
        time.sleep(0.005)
    first = time.monotonic()
    emulator.set_faults(fail_429=0.0)
    assert client.flush(5)
    client.shutdown(1)
    assert emulator.state.metronome.transaction_ids() == {"w"}
    assert time.monotonic() - first >= 0.15


def test_the_exporter_is_chosen_by_name(emulator: Emulator) -> None:
    client = meterstream.MeterClient(
        exporter="metronome", metronome_api_key=TOKEN, metronome_base=emulator.url
    )
    assert isinstance(client.exporter, MetronomeExporter)
    client.record("api_calls", 3, customer="cus_1", identifier="by-name")
    assert client.flush(5)
    client.shutdown(1)
    assert emulator.state.metronome.transaction_ids() == {"by-name"}


def test_without_a_token_it_is_a_dry_run_that_says_so(caplog: pytest.LogCaptureFixture) -> None:
    from meterstream._exporters.log import LogExporter

    client = meterstream.MeterClient(exporter="metronome")
    assert isinstance(client.exporter, LogExporter)
    assert "dry run" in caplog.text
    client.shutdown(0)
