"""The aggregate settings, and refusing to fold event names whose meter does not sum."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from meterstream._aggregate.aggregator import Aggregator
from meterstream._aggregate.meters import apply_meter_check, unaggregatable_names
from meterstream._config.aggregate import (
    check_aggregate_against_disabled,
    parse_aggregate,
    parse_aggregation_window,
)
from meterstream._exporters.stripe._api import StripeAPI
from meterstream.emulator import Emulator
from meterstream.errors import ConfigurationError

SECRET = "sk_test_aggregate"

# -- aggregate ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        {"llm_tokens": "sum", "search": "sum"},
        {"llm_tokens": "SUM ", "search": "sum"},
        '{"llm_tokens": "sum", "search": "sum"}',
        "llm_tokens=sum, search=sum",
        "llm_tokens=sum,search=sum,",
    ],
)
def test_aggregate_reads_a_dict_json_or_the_environment_form(raw: Any) -> None:
    assert parse_aggregate(raw) == {"llm_tokens": "sum", "search": "sum"}


@pytest.mark.parametrize("raw", [None, "", "  ", {}])
def test_aggregate_empty_means_nothing_folded(raw: Any) -> None:
    assert parse_aggregate(raw) == {}


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"api_calls": "count"}, "aggregate['api_calls']: unknown aggregation mode 'count'"),
        ({"gpu": "last"}, "aggregate['gpu']: unknown aggregation mode 'last'"),
        ({"x": 1}, "aggregate['x']: unknown aggregation mode 1"),
        ("x=avg", "aggregate['x']: unknown aggregation mode 'avg'"),
        ("llm_tokens", "aggregate: expected event_name=sum pairs"),
        ('{"x": ', "aggregate: expected a JSON object"),
        (["llm_tokens"], 'aggregate: expected {event_name: "sum"}'),
        ({"": "sum"}, "aggregate: event names must be strings of 1..100 characters"),
        ({"n" * 101: "sum"}, "aggregate: event names must be strings of 1..100 characters"),
    ],
)
def test_bad_aggregate_is_a_configuration_error_naming_the_setting(raw: Any, named: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_aggregate(raw)
    assert str(info.value).startswith(named)


def test_the_error_names_the_environment_variable_when_it_came_from_there() -> None:
    with pytest.raises(ConfigurationError, match=r"^METERSTREAM_AGGREGATE\['x'\]"):
        parse_aggregate("x=count", "METERSTREAM_AGGREGATE")


# -- aggregation_window ---------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "seconds"), [(5, 5), (1, 1), (60, 60), ("15", 15), (30.0, 30)])
def test_windows_are_whole_seconds_dividing_a_minute(raw: Any, seconds: int) -> None:
    assert parse_aggregation_window(raw) == seconds


@pytest.mark.parametrize("raw", [0, -5, 7, 45, 61, 120, 2.5, "5s", "", None, True, float("nan")])
def test_other_windows_are_a_configuration_error_naming_the_setting(raw: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"^aggregation_window: .*divide a minute"):
        parse_aggregation_window(raw)


def test_an_event_name_both_aggregated_and_disabled_is_refused() -> None:
    check_aggregate_against_disabled({"a": "sum"}, frozenset({"b"}))
    with pytest.raises(ConfigurationError, match=r"^aggregate: 'a' also in disabled_events"):
        check_aggregate_against_disabled({"a": "sum", "c": "sum"}, frozenset({"a", "b"}))


# -- meters that do not sum -----------------------------------------------------------------


def meter(name: str, formula: str, status: str = "active") -> dict[str, Any]:
    return {"event_name": name, "default_aggregation": {"formula": formula}, "status": status}


def test_only_names_whose_active_meters_all_sum_are_foldable() -> None:
    meters = [
        meter("tokens", "sum"),
        meter("calls", "count"),
        meter("gpu", "last"),
        meter("old", "sum", status="inactive"),
        meter("mixed", "sum"),
        meter("mixed", "count"),
    ]
    refused = unaggregatable_names(meters, ["tokens", "calls", "gpu", "old", "mixed", "none"])
    assert sorted(refused) == ["calls", "gpu", "mixed", "none", "old"]
    assert "'count'" in refused["calls"] and "'last'" in refused["gpu"]
    assert refused["none"] == "no active meter has this event name"


def create_meter(emulator: Emulator, name: str, formula: str) -> None:
    response = httpx.post(
        f"{emulator.api_base}/v1/billing/meters",
        data={
            "display_name": name,
            "event_name": name,
            "default_aggregation[formula]": formula,
        },
        headers={"Authorization": f"Bearer {SECRET}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_a_count_meter_read_from_the_api_is_left_unfolded_with_one_warning(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.reset()
    create_meter(emulator, "llm_tokens", "sum")
    create_meter(emulator, "api_calls", "count")
    aggregator = Aggregator(["llm_tokens", "api_calls"], 5)
    caplog.set_level(logging.WARNING, logger="meterstream")
    with StripeAPI(SECRET, emulator.api_base) as api:
        refused = apply_meter_check(aggregator, api)
        assert apply_meter_check(aggregator, api) == {}  # once: already refused
    assert list(refused) == ["api_calls"]
    assert aggregator.names == frozenset({"llm_tokens"})
    assert aggregator.stats()["aggregate_refused"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'api_calls'" in warnings[0] and "'count'" in warnings[0]
    assert aggregator.add("api_calls", "cus_1", 1) is False
    assert aggregator.add("llm_tokens", "cus_1", 1) is True


def test_meters_that_cannot_be_read_leave_folding_as_configured(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    aggregator = Aggregator(["llm_tokens"], 5)
    caplog.set_level(logging.WARNING, logger="meterstream")
    with StripeAPI("not_a_key", emulator.api_base) as api:
        assert apply_meter_check(aggregator, api) == {}
    assert aggregator.names == frozenset({"llm_tokens"})
    assert any("could not read the meters" in r.getMessage() for r in caplog.records)
