"""Whatever arrives, the stream answers 200 or a Stripe-shaped error and keeps serving."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.emulator_api import Api
from meterstream.emulator import Emulator

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)

keys = st.sampled_from(["event_name", "payload", "identifier", "timestamp", "value", "x"])
almost_events = st.dictionaries(
    keys,
    st.text(max_size=120)
    | st.dictionaries(st.text(max_size=10), st.text(max_size=5) | json_values, max_size=3)
    | json_values,
    max_size=5,
)
bodies = (
    st.binary(max_size=400).map(lambda b: ("raw", b))
    | json_values.map(lambda v: ("json", v))
    | st.lists(almost_events, max_size=105).map(lambda evs: ("json", {"events": evs}))
)

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _check(response: httpx.Response) -> None:
    assert response.status_code in (200, 400, 413), response.text
    body: Any = response.json()
    if response.status_code == 200:
        assert body == {}
    else:
        error = body["error"]
        assert error["type"] == "invalid_request_error"
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]


@SETTINGS
@given(body=bodies)
def test_the_stream_never_crashes(emulator: Emulator, api: Api, body: tuple[str, Any]) -> None:
    emulator.state.auto_create_meters = True
    kind, value = body
    raw = value if kind == "raw" else json.dumps(value).encode()
    _check(api.stream(None, _token(api), raw=raw))
    assert api.client.get("/_emulator/health").status_code == 200


_TOKENS: dict[int, str] = {}


def _token(api: Api) -> str:
    # One session per client: making one per example would be slow.
    key = id(api.client)
    if key not in _TOKENS:
        _TOKENS.clear()
        _TOKENS[key] = api.token()
    return _TOKENS[key]


@SETTINGS
@given(
    raw=st.binary(max_size=300),
    path=st.sampled_from(
        [
            "/v2/billing/meter_event_adjustments",
            "/v1/billing/meters",
            "/_emulator/faults",
        ]
    ),
)
def test_other_endpoints_never_crash(emulator: Emulator, raw: bytes, path: str) -> None:
    with httpx.Client(base_url=emulator.url, timeout=10) as client:
        r = client.post(path, content=raw, headers={"Authorization": "Bearer sk_test_fuzz"})
        assert r.status_code in (200, 400, 404), r.text
        if r.status_code != 200:
            assert r.json()["error"]["message"]
        emulator.set_faults(
            hang=False, latency_ms=0, fail_500=0, fail_429=0, rps_limit=0, expire_next=0
        )
