"""The faults the delivery tests need: a 400 naming one event, 3xx, slow and oversized sessions."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from meterstream.emulator import Emulator, FaultConfig

KEY = {"Authorization": "Bearer sk_test_faults"}


def _events(*ids: str) -> bytes:
    return json.dumps(
        {
            "events": [
                {
                    "identifier": ident,
                    "event_name": "api_calls",
                    "payload": {"stripe_customer_id": "cus_1", "value": "1"},
                }
                for ident in ids
            ]
        }
    ).encode()


@pytest.fixture
def emu() -> Emulator:
    with Emulator(auto_create_meters=True) as emulator:
        yield emulator  # type: ignore[misc]


def _token(http: httpx.Client) -> str:
    answer = http.post("/v2/billing/meter_event_session", headers=KEY)
    assert answer.status_code == 200
    return str(answer.json()["authentication_token"])


def test_a_request_holding_the_rejected_identifier_is_refused_naming_it(emu: Emulator) -> None:
    emu.set_faults(reject_identifier="b")
    with httpx.Client(base_url=emu.url) as http:
        headers = {"Authorization": f"Bearer {_token(http)}"}
        answer = http.post(
            "/v2/billing/meter_event_stream", content=_events("a", "b"), headers=headers
        )
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["param"] == "events[1]" and error["type"] == "invalid_request_error"
        assert emu.state.events("api_calls") == []  # the request is refused as a whole
        emu.set_faults(reject_names_event=False)
        answer = http.post("/v2/billing/meter_event_stream", content=_events("b"), headers=headers)
        assert answer.status_code == 400 and "param" not in answer.json()["error"]
        answer = http.post("/v2/billing/meter_event_stream", content=_events("a"), headers=headers)
        assert answer.status_code == 200


def test_redirects_are_answered_with_a_location(emu: Emulator) -> None:
    emu.set_faults(redirect_status=307, redirect_location="http://127.0.0.1:9/x")
    with httpx.Client(base_url=emu.url) as http:
        answer = http.post("/v2/billing/meter_event_stream", content=_events("a"), headers=KEY)
        assert answer.status_code == 307 and answer.headers["location"] == "http://127.0.0.1:9/x"
        assert http.post("/v2/billing/meter_event_session", headers=KEY).status_code == 200
        emu.set_faults(apply_to_sessions=True)
        answer = http.post("/v2/billing/meter_event_session", headers=KEY)
        assert answer.status_code == 307


def test_session_answers_can_trickle_and_be_oversized(emu: Emulator) -> None:
    emu.set_faults(session_pad_bytes=100_000)
    with httpx.Client(base_url=emu.url) as http:
        answer = http.post("/v2/billing/meter_event_session", headers=KEY)
        assert answer.status_code == 200 and len(answer.content) > 100_000
        assert answer.json()["authentication_token"]
        emu.set_faults(session_pad_bytes=0, session_trickle_ms=2)
        started = time.monotonic()
        answer = http.post("/v2/billing/meter_event_session", headers=KEY)
        assert answer.status_code == 200 and answer.json()["authentication_token"]
        assert time.monotonic() - started >= len(answer.content) * 0.002 * 0.9


def test_the_new_faults_check_their_values() -> None:
    with pytest.raises(ValueError, match="redirect_status"):
        FaultConfig(redirect_status=200)
    with pytest.raises(ValueError, match="session_pad_bytes"):
        FaultConfig(session_pad_bytes=-1)
    with pytest.raises(ValueError, match="session_trickle_ms"):
        FaultConfig(session_trickle_ms=-1.0)
