"""The official stripe-python client talks to the emulator as it would to Stripe."""

from __future__ import annotations

import time

import pytest

from helpers.emulator_api import SECRET, FakeClock
from meterstream.emulator import Emulator, Total

stripe = pytest.importorskip("stripe")


def _client(emulator: Emulator, key: str = SECRET) -> object:
    return stripe.StripeClient(
        key, base_addresses={"api": emulator.url, "meter_events": emulator.url}
    )


def test_sessions_and_streams_through_stripe_python(emulator: Emulator) -> None:
    emulator.state.auto_create_meters = True
    client = _client(emulator)
    session = client.v2.billing.meter_event_session.create()  # type: ignore[attr-defined]
    assert session.object == "v2.billing.meter_event_session"
    client.v2.billing.meter_event_stream.create(  # type: ignore[attr-defined]
        {
            "events": [
                {
                    "event_name": "api_calls",
                    "identifier": "sp-1",
                    "payload": {"stripe_customer_id": "cus_1", "value": "25"},
                },
                {
                    "event_name": "api_calls",
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                    "payload": {"stripe_customer_id": "cus_1", "value": "5"},
                },
            ]
        },
        {"api_key": session.authentication_token},
    )
    assert emulator.state.total("api_calls", "cus_1") == Total(30.0, 2)


def test_an_expired_session_raises_temporary_session_expired(
    emulator: Emulator, clock: FakeClock
) -> None:
    client = _client(emulator)
    session = client.v2.billing.meter_event_session.create()  # type: ignore[attr-defined]
    clock.advance(901)
    with pytest.raises(stripe.TemporarySessionExpiredError) as info:
        client.v2.billing.meter_event_stream.create(  # type: ignore[attr-defined]
            {"events": [{"event_name": "e", "payload": {"value": "1"}}]},
            {"api_key": session.authentication_token},
        )
    assert info.value.http_status == 401
    assert info.value.code == "billing_meter_event_session_expired"


def test_a_wrong_key_raises_authentication_error(emulator: Emulator) -> None:
    with pytest.raises(stripe.AuthenticationError):
        _client(emulator, "sk_live_nope").v2.billing.meter_event_session.create()  # type: ignore[attr-defined]


def test_a_bad_batch_raises_invalid_request_error(emulator: Emulator) -> None:
    client = _client(emulator)
    session = client.v2.billing.meter_event_session.create()  # type: ignore[attr-defined]
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v2.billing.meter_event_stream.create(  # type: ignore[attr-defined]
            {"events": [{"event_name": "e", "payload": {"value": 3}}]},
            {"api_key": session.authentication_token},
        )
    assert "events[0].payload.value" in str(info.value)


def test_injected_faults_map_to_stripes_exceptions(emulator: Emulator) -> None:
    client = _client(emulator)
    token = client.v2.billing.meter_event_session.create().authentication_token  # type: ignore[attr-defined]
    body = {"events": [{"event_name": "e", "payload": {"value": "1"}}]}
    emulator.set_faults(fail_429=1.0)
    with pytest.raises(stripe.RateLimitError):
        client.v2.billing.meter_event_stream.create(body, {"api_key": token})  # type: ignore[attr-defined]
    emulator.set_faults(fail_429=0.0, fail_500=1.0)
    with pytest.raises(stripe.APIError):
        client.v2.billing.meter_event_stream.create(body, {"api_key": token})  # type: ignore[attr-defined]


def test_meters_summaries_and_adjustments_through_stripe_python(
    emulator: Emulator, clock: FakeClock
) -> None:
    client = _client(emulator)
    meter = client.v1.billing.meters.create(
        {  # type: ignore[attr-defined]
            "display_name": "Search",
            "event_name": "search",
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
        }
    )
    assert meter.id.startswith("mtr_") and meter.event_name == "search"
    assert [m.id for m in client.v1.billing.meters.list().data] == [meter.id]  # type: ignore[attr-defined]
    assert client.v1.billing.meters.retrieve(meter.id).id == meter.id  # type: ignore[attr-defined]
    token = client.v2.billing.meter_event_session.create().authentication_token  # type: ignore[attr-defined]
    client.v2.billing.meter_event_stream.create(  # type: ignore[attr-defined]
        {
            "events": [
                {
                    "event_name": "search",
                    "identifier": f"s{i}",
                    "payload": {"stripe_customer_id": "cus_7", "value": "3"},
                }
                for i in range(4)
            ]
        },
        {"api_key": token},
    )
    client.v2.billing.meter_event_adjustments.create(  # type: ignore[attr-defined]
        {"event_name": "search", "type": "cancel", "cancel": {"identifier": "s0"}}
    )
    start = int(clock.now) // 60 * 60
    summaries = client.v1.billing.meters.event_summaries.list(  # type: ignore[attr-defined]
        meter.id, {"customer": "cus_7", "start_time": start, "end_time": start + 60}
    )
    assert [s.aggregated_value for s in summaries.data] == [9.0]
