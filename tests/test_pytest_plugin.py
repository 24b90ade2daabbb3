"""The pytest plugin, as a user's test suite sees it (run in a child pytest)."""

from __future__ import annotations

import pytest

USER_TESTS = """
import pytest
import meterstream


@meterstream.meter("ai_search_api")
def search(query):
    return [query]


@meterstream.meter("llm_tokens", value=lambda call: call.result)
def complete(prompt):
    return len(prompt)


def test_records_are_seen(meter_events):
    with meterstream.customer("cus_1"):
        search("a")
        search("b")
        complete("hello")
    meter_events.assert_recorded("ai_search_api", customer="cus_1", count=2)
    meter_events.assert_recorded("llm_tokens", customer="cus_1", value=5)
    assert meter_events.total("llm_tokens") == 5
    assert len(meter_events.events) == 3


def test_each_test_starts_empty(meter_events):
    meter_events.assert_nothing_recorded()


def test_assert_recorded_explains_a_miss(meter_events):
    with meterstream.customer("cus_1"):
        search("a")
    with pytest.raises(AssertionError, match="no 'ai_search_api' event for customer 'cus_2'"):
        meter_events.assert_recorded("ai_search_api", customer="cus_2")
    with pytest.raises(AssertionError, match="expected 3"):
        meter_events.assert_recorded("ai_search_api", count=3)


def test_the_emulator_fixture_delivers_for_real(stripe_emulator):
    client = stripe_emulator.client

    @client.meter("api_calls")
    def handler():
        return "ok"

    with meterstream.customer("cus_9"):
        for _ in range(5):
            handler()
    assert client.flush(10)
    assert stripe_emulator.state.total("api_calls", "cus_9").count == 5
    assert stripe_emulator.api_base.startswith("http://127.0.0.1:")
"""


def test_the_plugin_fixtures_work_in_a_users_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
