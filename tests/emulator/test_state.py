"""EmulatorState on its own: no server, a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from helpers.emulator_api import NOW, FakeClock, event
from meterstream.emulator import EmulatorState, FaultConfig, Total
from meterstream.emulator._errors import StripeError
from meterstream.emulator._validate import format_rfc3339, parse_rfc3339


def make_state(**kwargs: Any) -> tuple[EmulatorState, FakeClock]:
    clock = FakeClock()
    return EmulatorState(clock=clock, **kwargs), clock


def test_a_session_token_is_valid_until_its_ttl_passes() -> None:
    state, clock = make_state(session_ttl=60)
    session = state.create_session()
    assert session["object"] == "v2.billing.meter_event_session"
    assert session["id"].startswith("mes_")
    assert session["created"] == format_rfc3339(NOW)
    assert session["expires_at"] == format_rfc3339(NOW + 60)
    assert session["livemode"] is False
    token = session["authentication_token"]
    clock.advance(59.9)
    assert state.session_valid(token)
    clock.advance(0.1)
    assert not state.session_valid(token)
    assert not state.session_valid("mets_unknown")


def test_default_keys_are_test_secret_and_restricted_keys() -> None:
    state, _ = make_state()
    assert state.check_api_key("sk_test_abc")
    assert state.check_api_key("rk_test_abc")
    assert not state.check_api_key("sk_live_abc")
    assert not state.check_api_key("pk_test_abc")
    explicit, _ = make_state(api_keys=["sk_test_only"])
    assert explicit.check_api_key("sk_test_only")
    assert not explicit.check_api_key("sk_test_other")


def test_accepted_events_are_stored_and_totalled() -> None:
    state, _ = make_state(auto_create_meters=True)
    stored, dups = state.ingest({"events": [event("a", value="2"), event("b", value="3")]})
    assert (stored, dups) == (2, 0)
    assert state.totals() == {("api_calls", "cus_1"): Total(5.0, 2)}
    assert state.total("api_calls", "cus_1") == Total(5.0, 2)
    assert state.total("api_calls", "cus_nobody") == Total(0.0, 0)
    (first, second) = state.events()
    assert first["identifier"] == "a"
    assert first["payload"] == {"stripe_customer_id": "cus_1", "value": "2"}
    assert first["timestamp"] == format_rfc3339(NOW)  # no timestamp: the time received
    assert first["received_at"] == format_rfc3339(NOW)
    assert first["cancelled"] is False and first["error"] is None
    assert state.event_count == 2


def test_a_missing_identifier_is_generated() -> None:
    state, _ = make_state(auto_create_meters=True)
    state.ingest({"events": [event(), event()]})
    ids = [e["identifier"] for e in state.events()]
    assert len(set(ids)) == 2 and all(ids)


def test_a_duplicate_within_24_hours_is_accepted_but_stored_once() -> None:
    state, clock = make_state(auto_create_meters=True)
    state.ingest({"events": [event("dup-1")]})
    clock.advance(86399)
    assert state.ingest({"events": [event("dup-1"), event("new-1")]}) == (1, 1)
    assert state.ingest({"events": [event("x"), event("x")]}) == (1, 1)
    assert state.duplicates == 2
    assert state.total("api_calls", "cus_1").count == 3
    clock.advance(1)  # 24 h after the first: the identifier is free again
    assert state.ingest({"events": [event("dup-1")]}) == (1, 0)


def test_events_are_filtered_by_event_name_and_customer() -> None:
    state, _ = make_state(auto_create_meters=True)
    state.ingest(
        {
            "events": [
                event("1", customer="cus_a"),
                event("2", customer="cus_b"),
                event("3", name="other"),
            ]
        }
    )
    assert [e["identifier"] for e in state.events("api_calls")] == ["1", "2"]
    assert [e["identifier"] for e in state.events(customer="cus_b")] == ["2"]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"value": "1"}, "meter_event_no_customer_defined"),
        ({"stripe_customer_id": "", "value": "1"}, "meter_event_no_customer_defined"),
        ({"stripe_customer_id": "cus_1", "value": "abc"}, "meter_event_invalid_value"),
        ({"stripe_customer_id": "cus_1", "value": "nan"}, "meter_event_invalid_value"),
        ({"stripe_customer_id": "cus_1"}, "meter_event_invalid_value"),
        (
            {"stripe_customer_id": "cus_1", "value": "1234567890123456"},
            "meter_event_value_too_many_digits",
        ),
    ],
)
def test_content_errors_are_accepted_then_reported_asynchronously(
    payload: dict[str, str], code: str
) -> None:
    state, _ = make_state(auto_create_meters=True)
    stored, _ = state.ingest(
        {"events": [{"identifier": "bad-1", "event_name": "api_calls", "payload": payload}]}
    )
    assert stored == 1
    (error,) = state.validation_errors
    assert error["code"] == code and error["identifier"] == "bad-1"
    assert error["event_name"] == "api_calls" and error["message"]
    assert state.totals() == {}


def test_an_event_for_no_meter_is_a_no_meter_error_unless_meters_are_auto_created() -> None:
    state, _ = make_state()
    state.ingest({"events": [event("e1", name="unknown_event")]})
    assert [e["code"] for e in state.validation_errors] == ["no_meter"]
    auto, _ = make_state(auto_create_meters=True)
    auto.ingest({"events": [event("e1", name="unknown_event")]})
    assert auto.validation_errors == []
    (meter,) = auto.meters()
    assert meter["event_name"] == "unknown_event"
    assert meter["default_aggregation"] == {"formula": "sum"}


def test_meter_payload_keys_decide_the_customer_and_the_value() -> None:
    state, _ = make_state()
    state.create_meter(
        {
            "display_name": "Tokens",
            "event_name": "tokens",
            "default_aggregation[formula]": "sum",
            "customer_mapping[event_payload_key]": "account",
            "customer_mapping[type]": "by_id",
            "value_settings[event_payload_key]": "tokens",
        }
    )
    state.ingest(
        {
            "events": [
                {"event_name": "tokens", "payload": {"account": "cus_9", "tokens": "7"}},
            ]
        }
    )
    assert state.total("tokens", "cus_9") == Total(7.0, 1)


def test_count_meters_need_no_value() -> None:
    state, _ = make_state()
    state.create_meter(
        {"display_name": "n", "event_name": "hits", "default_aggregation[formula]": "count"}
    )
    state.ingest({"events": [{"event_name": "hits", "payload": {"stripe_customer_id": "c"}}]})
    assert state.validation_errors == []
    assert state.total("hits", "c").count == 1


def test_timestamps_out_of_window_can_be_asynchronous_errors() -> None:
    state, _ = make_state(auto_create_meters=True, check_timestamp_range=False)
    state.ingest(
        {
            "events": [
                event("old", timestamp=format_rfc3339(NOW - 36 * 86400)),
                event("future", timestamp=format_rfc3339(NOW + 600)),
            ]
        }
    )
    assert [e["code"] for e in state.validation_errors] == [
        "timestamp_too_far_in_past",
        "timestamp_in_future",
    ]


def test_a_rejected_batch_stores_nothing_and_creates_no_meter() -> None:
    state, _ = make_state(auto_create_meters=True)
    with pytest.raises(StripeError) as info:
        state.ingest({"events": [event("ok", name="fresh"), {"event_name": "fresh"}]})
    assert info.value.status == 400
    assert state.event_count == 0 and state.meters() == []
    assert state.ingest({"events": [event("ok", name="fresh")]}) == (1, 0)


def test_reset_forgets_data_and_faults_but_keeps_sessions() -> None:
    state, _ = make_state(auto_create_meters=True, faults=FaultConfig(latency_ms=5))
    token = state.create_session()["authentication_token"]
    state.ingest({"events": [event("a")]})
    state.set_faults(fail_500=1.0)
    state.count_request("meter_event_stream", 200)
    state.reset()
    assert state.events() == [] and state.totals() == {} and state.meters() == []
    assert state.requests == {} and state.duplicates == 0
    assert state.faults == FaultConfig(latency_ms=5)
    assert state.session_valid(token)
    state.ingest({"events": [event("a")]})  # the identifier is free again
    assert state.event_count == 1


def test_set_faults_rejects_unknown_names_and_bad_values() -> None:
    state, _ = make_state()
    with pytest.raises(ValueError, match="unknown fault"):
        state.set_faults(explode=True)
    with pytest.raises(ValueError, match="fraction"):
        state.set_faults(fail_500=2.0)
    with pytest.raises(ValueError, match="must be"):
        state.set_faults(hang="yes")
    assert state.set_faults(fail_429=1).fail_429 == 1.0


def test_the_rps_limit_counts_per_wall_clock_second() -> None:
    state, clock = make_state(faults=FaultConfig(rps_limit=2))
    decide = state.injector.decide
    assert decide("meter_event_stream") is None
    assert decide("meter_event_stream") is None
    third = decide("meter_event_stream")
    assert third is not None and third.status == 429 and third.type == "rate_limit"
    assert decide("meter_event_session") is None  # sessions are not faulted by default
    clock.advance(1)
    assert decide("meter_event_stream") is None


def test_fractional_faults_follow_the_seed() -> None:
    one, _ = make_state(faults=FaultConfig(fail_500=0.5), seed=7)
    two, _ = make_state(faults=FaultConfig(fail_500=0.5), seed=7)
    a = [one.injector.decide("meter_event_stream") is None for _ in range(50)]
    b = [two.injector.decide("meter_event_stream") is None for _ in range(50)]
    assert a == b and 5 < sum(a) < 45


def test_fault_config_validates_its_values() -> None:
    with pytest.raises(ValueError):
        FaultConfig(fail_429=-0.1)
    with pytest.raises(ValueError):
        FaultConfig(latency_ms=float("inf"))
    with pytest.raises(ValueError):
        FaultConfig(expire_next=-1)
    with pytest.raises(ValueError):
        EmulatorState(session_ttl=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-06-01T12:00:00Z", 1717243200.0),
        ("2024-06-01T12:00:00.250Z", 1717243200.25),
        ("2024-06-01T14:00:00+02:00", 1717243200.0),
        ("2024-06-01T10:30:00-01:30", 1717243200.0),
        ("2024-06-01t12:00:00z", 1717243200.0),
        ("2024-02-30T12:00:00Z", None),
        ("2024-06-01T24:00:00Z", None),
        ("2024-06-01 12:00:00Z", None),
        ("2024-06-01T12:00:00", None),
        ("yesterday", None),
        ("2024-06-01T12:00:00+25:00", None),
    ],
)
def test_rfc3339_parsing(text: str, expected: float) -> None:
    assert parse_rfc3339(text) == expected


def test_rfc3339_formatting_has_milliseconds_and_z() -> None:
    assert format_rfc3339(1717243200.25) == "2024-06-01T12:00:00.250Z"


def test_an_adjustment_lag_keeps_the_cancelled_event_counted_until_it_passes() -> None:
    state, clock = make_state(auto_create_meters=True)
    state.ingest({"events": [event("keep"), event("gone")]})
    state.set_faults(adjustment_lag=30)
    body = {"event_name": "api_calls", "type": "cancel", "cancel": {"identifier": "gone"}}
    assert state.cancel_event(body)["status"] == "pending"
    assert state.total("api_calls", "cus_1").count == 2  # not processed yet
    assert state.cancel_event(body)["status"] == "pending"  # once, however often asked
    clock.advance(29.9)
    assert state.total("api_calls", "cus_1").count == 2
    clock.advance(0.1)
    assert state.total("api_calls", "cus_1").count == 1
    [meter] = state.meters()
    start = int(NOW) // 3600 * 3600
    query = {"customer": "cus_1", "start_time": str(start), "end_time": str(start + 3600)}
    [summary] = state.event_summaries(meter["id"], query)["data"]
    assert summary["aggregated_value"] == 1
    with pytest.raises(ValueError, match="adjustment_lag"):
        state.set_faults(adjustment_lag=-1)
