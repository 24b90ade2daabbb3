"""The meter_events fixture shows the uses recorded beside the (folded) events sent."""

from __future__ import annotations

import pytest

USER_TESTS = """
from decimal import Decimal

import pytest
import meterstream


@meterstream.meter("llm_tokens", value=lambda call: call.result)
def complete(prompt):
    return len(prompt)


@pytest.mark.meter_events(aggregate={"llm_tokens": "sum"}, aggregation_window=60)
def test_uses_and_the_folded_events(meter_events):
    with meterstream.customer("cus_1"):
        complete("hello")
        complete("hi")
        meterstream.record("llm_tokens", Decimal("0.5"), dimensions={"model": "m"})
    uses = meter_events.uses
    assert [(u.event_name, u.customer, u.value) for u in uses] == [
        ("llm_tokens", "cus_1", 5),
        ("llm_tokens", "cus_1", 2),
        ("llm_tokens", "cus_1", Decimal("0.5")),
    ]
    assert uses[2].dimensions == {"model": "m"} and uses[0].dimensions is None
    # On the wire: one event per customer, dimensions and window.
    assert sorted(e["payload"]["value"] for e in meter_events.events) == ["0.5", "7"]
    assert meter_events.total("llm_tokens", customer="cus_1") == Decimal("7.5")


@pytest.mark.meter_events(aggregate={"llm_tokens": "sum"})
class TestOnAClass:
    def test_the_marker_applies_to_each_test(self, meter_events):
        with meterstream.customer("cus_2"):
            for _ in range(10):
                complete("abc")
        assert len(meter_events.uses) == 10
        assert meter_events.count("llm_tokens") < 10
        assert meter_events.total("llm_tokens") == 30


def test_without_aggregation_each_use_is_one_event(meter_events):
    with meterstream.customer("cus_3"):
        complete("abcd")
        meterstream.record("llm_tokens", 3, identifier="req-1")
    assert [(u.value, u.identifier) for u in meter_events.uses] == [(4, None), (3, "req-1")]
    assert len(meter_events.events) == 2
    meter_events.clear()
    assert meter_events.uses == [] and meter_events.events == []


@pytest.mark.meter_events(aggregate={"llm_tokens": "sum"})
def test_uses_refused_at_record_time_are_not_listed(meter_events):
    with meterstream.customer("cus_4"):
        meterstream.record("llm_tokens", float("nan"))
    assert meter_events.uses == []


@pytest.mark.meter_events({"aggregate": {"llm_tokens": "sum"}})
def test_settings_are_keywords(meter_events):
    pass
"""


def test_meter_events_shows_uses_and_folded_events(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(["*takes settings as keywords*"])
