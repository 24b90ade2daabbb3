"""Every endpoint and error path, over HTTP against the real server."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from helpers.emulator_api import NOW, SECRET, Api, FakeClock, assert_v2_error, event
from meterstream.emulator import Emulator, Total
from meterstream.emulator._validate import format_rfc3339

SESSION = "/v2/billing/meter_event_session"
STREAM = "/v2/billing/meter_event_stream"
ADJUST = "/v2/billing/meter_event_adjustments"


# -- sessions --------------------------------------------------------------


def test_a_session_has_stripes_shape(api: Api, clock: FakeClock) -> None:
    session = api.session()
    assert set(session) == {
        "id",
        "object",
        "authentication_token",
        "created",
        "expires_at",
        "livemode",
    }
    assert session["object"] == "v2.billing.meter_event_session"
    assert session["created"] == format_rfc3339(NOW)
    assert session["expires_at"] == format_rfc3339(NOW + 900)


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "did not provide an API key"),
        ({"Authorization": "Bearer sk_live_abcdefghijkl"}, "Invalid API Key provided: sk_live_"),
        ({"Authorization": "Bearer"}, "did not provide"),
        ({"Authorization": "Token sk_test_x"}, "did not provide"),
        ({"Authorization": "Bearer pk_test_1234567890"}, "Invalid API Key"),
    ],
)
def test_a_session_needs_a_test_secret_key(
    http: httpx.Client, headers: dict[str, str], fragment: str
) -> None:
    r = http.post(SESSION, headers=headers)
    message = assert_v2_error(r, 401, "invalid_request_error", "invalid_api_key")
    assert fragment in message
    assert "abcdefghijkl" not in message  # the key is masked


def test_http_basic_auth_with_the_key_as_user_is_accepted(http: httpx.Client) -> None:
    r = http.post(SESSION, auth=(SECRET, ""))
    assert r.status_code == 200


def test_an_explicit_key_set_refuses_other_keys(emulator: Emulator, api: Api) -> None:
    emulator.state.api_keys = {"sk_test_right"}
    r = api.client.post(SESSION, headers={"Authorization": f"Bearer {SECRET}"})
    assert r.status_code == 401
    assert api.session("sk_test_right")["authentication_token"]


# -- the stream ------------------------------------------------------------


def test_a_good_batch_is_answered_with_an_empty_object(api: Api, emulator: Emulator) -> None:
    emulator.state.auto_create_meters = True
    r = api.stream({"events": [event("e1", value="4"), event("e2", value="6")]})
    assert r.status_code == 200 and r.json() == {}
    assert r.headers["content-type"] == "application/json"
    assert r.headers["request-id"].startswith("req_")
    assert emulator.state.total("api_calls", "cus_1") == Total(10.0, 2)
    assert emulator.state.requests["meter_event_stream"] == {"200": 1}


def test_a_duplicate_identifier_is_counted_not_stored(api: Api, emulator: Emulator) -> None:
    emulator.state.auto_create_meters = True
    token = api.token()
    for _ in range(3):
        assert api.stream({"events": [event("same")]}, token).status_code == 200
    assert emulator.state.duplicates == 2
    assert emulator.state.event_count == 1


def test_an_expired_token_is_temporary_session_expired(api: Api, clock: FakeClock) -> None:
    token = api.token()
    assert api.stream({"events": [event("a")]}, token).status_code == 200
    clock.advance(900)
    r = api.stream({"events": [event("b")]}, token)
    assert_v2_error(r, 401, "temporary_session_expired", "billing_meter_event_session_expired")


def test_an_unknown_token_is_temporary_session_expired(api: Api) -> None:
    r = api.stream({"events": [event("a")]}, "mets_made_up")
    assert_v2_error(r, 401, "temporary_session_expired", "billing_meter_event_session_expired")


def test_a_stream_call_without_credentials_is_401(http: httpx.Client) -> None:
    r = http.post(STREAM, json={"events": [event("a")]})
    assert_v2_error(r, 401, "invalid_request_error", "invalid_api_key")


def test_a_tiny_ttl_expires_for_real(emulator: Emulator, api: Api) -> None:
    emulator.state.session_ttl = 0.001
    token = api.token()
    deadline = time.monotonic() + 5
    while True:  # a millisecond of real time: poll, never assume it has passed
        r = api.stream({"events": [event("a")]}, token)
        if r.status_code != 200 or time.monotonic() > deadline:
            break
    assert r.status_code == 401 and r.json()["error"]["type"] == "temporary_session_expired"


def _too_long(n: int = 101) -> str:
    return "x" * n


BAD_BODIES: list[tuple[Any, str, str]] = [
    ([], "body: must be a JSON object", "parameter_invalid"),
    ("events", "body: must be a JSON object", "parameter_invalid"),
    ({}, "events: is required", "parameter_missing"),
    ({"events": [event("a")], "extra": 1}, "extra: unknown parameter", "parameter_unknown"),
    ({"events": {}}, "events: must be an array", "parameter_invalid"),
    ({"events": []}, "events: must contain at least 1 event", "parameter_invalid_empty"),
    ({"events": [event(str(i)) for i in range(101)]}, "at most 100 events", "parameter_invalid"),
    ({"events": [event("a"), "x"]}, "events[1]: must be an object", "parameter_invalid"),
    ({"events": [{"payload": {}}]}, "events[0].event_name: is required", "parameter_missing"),
    (
        {"events": [{"event_name": 5, "payload": {}}]},
        "events[0].event_name: must be a string",
        "parameter_invalid",
    ),
    (
        {"events": [{"event_name": "", "payload": {}}]},
        "events[0].event_name: must not be empty",
        "parameter_invalid_string_empty",
    ),
    (
        {"events": [{"event_name": _too_long(), "payload": {}}]},
        "events[0].event_name: must be at most 100 characters",
        "parameter_invalid",
    ),
    ({"events": [{"event_name": "a"}]}, "events[0].payload: is required", "parameter_missing"),
    (
        {"events": [{"event_name": "a", "payload": []}]},
        "events[0].payload: must be an object",
        "parameter_invalid",
    ),
    (
        {
            "events": [
                event("a"),
                event("b"),
                event("c"),
                {"event_name": "a", "payload": {"value": 3}},
            ]
        },
        "events[3].payload.value: must be a string, got a number",
        "parameter_invalid",
    ),
    (
        {"events": [{"event_name": "a", "payload": {"k": None}}]},
        "events[0].payload.k: must be a string, got null",
        "parameter_invalid",
    ),
    (
        {"events": [{"event_name": "a", "payload": {"k": True}}]},
        "events[0].payload.k: must be a string, got a boolean",
        "parameter_invalid",
    ),
    (
        {"events": [{"event_name": "a", "payload": {}, "identifier": 7}]},
        "events[0].identifier: must be a string",
        "parameter_invalid",
    ),
    (
        {"events": [{"event_name": "a", "payload": {}, "identifier": None}]},
        "events[0].identifier: must be a string, got null",
        "parameter_invalid",
    ),
    (
        {"events": [{"event_name": "a", "payload": {}, "identifier": ""}]},
        "events[0].identifier: must not be empty",
        "parameter_invalid_string_empty",
    ),
    (
        {"events": [{"event_name": "a", "payload": {}, "identifier": _too_long()}]},
        "events[0].identifier: must be at most 100 characters",
        "parameter_invalid",
    ),
    (
        {"events": [{"event_name": "a", "payload": {}, "timestamp": 1717243200}]},
        "events[0].timestamp: must be a string",
        "parameter_invalid",
    ),
    (
        {"events": [{"event_name": "a", "payload": {}, "timestamp": "2024-06-01"}]},
        "events[0].timestamp: must be an RFC 3339 date-time",
        "parameter_invalid",
    ),
    (
        {"events": [{"event_name": "a", "payload": {}, "timestamp": "2024-13-01T00:00:00Z"}]},
        "events[0].timestamp: must be an RFC 3339 date-time",
        "parameter_invalid",
    ),
    (
        {"events": [event("a", timestamp=format_rfc3339(NOW - 36 * 86400))]},
        "events[0].timestamp: must be within the past 35 days",
        "timestamp_too_far_in_past",
    ),
    (
        {"events": [event("a", timestamp=format_rfc3339(NOW + 301))]},
        "events[0].timestamp: must not be more than 5 minutes in the future",
        "timestamp_in_future",
    ),
    (
        {"events": [{"event_name": "a", "payload": {}, "colour": "red"}]},
        "events[0].colour: unknown parameter",
        "parameter_unknown",
    ),
]


@pytest.mark.parametrize(
    ("body", "fragment", "code"), BAD_BODIES, ids=[b[1][:40] for b in BAD_BODIES]
)
def test_a_bad_body_is_a_400_naming_the_field(
    api: Api, emulator: Emulator, clock: FakeClock, body: Any, fragment: str, code: str
) -> None:
    emulator.state.auto_create_meters = True
    r = api.stream(body)
    message = assert_v2_error(r, 400, "invalid_request_error", code)
    assert fragment in message
    assert emulator.state.event_count == 0  # all or nothing


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "body: is empty"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b'{"events": [' * 50_000, "not valid JSON"),
        (b"[" * 50_000 + b"]" * 50_000, "not valid JSON"),
    ],
)
def test_a_body_that_is_not_json_is_a_400(api: Api, raw: bytes, fragment: str) -> None:
    r = api.stream(None, raw=raw)
    assert r.status_code == 400
    assert fragment in r.json()["error"]["message"]


def test_a_huge_body_is_a_413(api: Api) -> None:
    r = api.stream(None, raw=b" " * (2 << 20))
    assert_v2_error(r, 413, "invalid_request_error", "request_too_large")


def test_a_timestamp_inside_the_window_is_kept(
    api: Api, emulator: Emulator, clock: FakeClock
) -> None:
    emulator.state.auto_create_meters = True
    ts = "2025-06-15T14:00:00.000Z"
    assert api.stream({"events": [event("a", timestamp=ts)]}).status_code == 200
    (stored,) = emulator.state.events()
    assert stored["timestamp"] == ts


def test_content_errors_are_200_and_readable_through_the_admin_api(
    api: Api, http: httpx.Client
) -> None:
    r = api.stream(
        {
            "events": [
                event("n1", name="no_such_meter"),
                {"identifier": "c1", "event_name": "no_such_meter", "payload": {"value": "1"}},
            ]
        }
    )
    assert r.status_code == 200
    errors = http.get("/_emulator/state").json()["validation_errors"]
    assert [(e["code"], e["identifier"]) for e in errors] == [
        ("no_meter", "n1"),
        ("no_meter", "c1"),
    ]
    api.meter("priced")
    api.stream(
        {
            "events": [
                {"identifier": "c2", "event_name": "priced", "payload": {"value": "1"}},
                event("v1", name="priced", value="lots"),
            ]
        }
    )
    errors = http.get("/_emulator/state").json()["validation_errors"]
    assert [(e["code"], e["identifier"]) for e in errors[2:]] == [
        ("meter_event_no_customer_defined", "c2"),
        ("meter_event_invalid_value", "v1"),
    ]


# -- meters ----------------------------------------------------------------


def test_meters_are_created_listed_and_retrieved(api: Api) -> None:
    meter = api.meter(
        "tokens",
        "sum",
        **{
            "customer_mapping[event_payload_key]": "acct",
            "customer_mapping[type]": "by_id",
            "value_settings[event_payload_key]": "n",
        },
    )
    assert meter["id"].startswith("mtr_") and meter["object"] == "billing.meter"
    assert meter["customer_mapping"] == {"event_payload_key": "acct", "type": "by_id"}
    assert meter["value_settings"] == {"event_payload_key": "n"}
    assert meter["status"] == "active" and meter["livemode"] is False
    assert isinstance(meter["created"], int)
    second = api.meter("hits", "count")
    listing = api.get("/v1/billing/meters").json()
    assert listing["object"] == "list" and listing["url"] == "/v1/billing/meters"
    assert [m["id"] for m in listing["data"]] == [second["id"], meter["id"]]
    assert listing["has_more"] is False
    page = api.get("/v1/billing/meters", limit=1).json()
    assert [m["id"] for m in page["data"]] == [second["id"]] and page["has_more"] is True
    rest = api.get("/v1/billing/meters", limit=1, starting_after=second["id"]).json()
    assert [m["id"] for m in rest["data"]] == [meter["id"]] and rest["has_more"] is False
    assert api.get(f"/v1/billing/meters/{meter['id']}").json() == meter


@pytest.mark.parametrize(
    ("data", "param", "fragment"),
    [
        ({"event_name": "a", "default_aggregation[formula]": "sum"}, "display_name", "Missing"),
        (
            {"display_name": "a", "event_name": "a", "default_aggregation[formula]": "avg"},
            "default_aggregation[formula]",
            "must be one of",
        ),
        (
            {
                "display_name": "a",
                "event_name": "a",
                "default_aggregation[formula]": "sum",
                "customer_mapping[type]": "by_email",
            },
            "customer_mapping[type]",
            "by_id",
        ),
        (
            {
                "display_name": "a",
                "event_name": "a",
                "default_aggregation[formula]": "sum",
                "colour": "red",
            },
            "colour",
            "unknown parameter",
        ),
    ],
)
def test_a_bad_meter_is_a_v1_400(
    http: httpx.Client, data: dict[str, str], param: str, fragment: str
) -> None:
    r = http.post("/v1/billing/meters", data=data, headers={"Authorization": f"Bearer {SECRET}"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert fragment in error["message"]


def test_two_meters_cannot_share_an_event_name(api: Api, http: httpx.Client) -> None:
    api.meter("same")
    r = http.post(
        "/v1/billing/meters",
        headers={"Authorization": f"Bearer {SECRET}"},
        data={"display_name": "b", "event_name": "same", "default_aggregation[formula]": "sum"},
    )
    assert r.status_code == 400 and "already exists" in r.json()["error"]["message"]


def test_an_unknown_meter_is_a_v1_404(api: Api) -> None:
    r = api.get("/v1/billing/meters/mtr_nope")
    assert r.status_code == 404
    assert r.json() == {
        "error": {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "message": "No such billing meter: 'mtr_nope'",
            "param": "id",
        }
    }


def test_v1_auth_errors_have_the_v1_shape(http: httpx.Client) -> None:
    r = http.get("/v1/billing/meters", headers={"Authorization": "Bearer sk_live_123456789"})
    assert r.status_code == 401
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and "code" not in error


# -- event summaries -------------------------------------------------------

HOUR = 3600
BASE = int(NOW) // 86400 * 86400 - 86400  # midnight UTC, a day before "now"


def _load(api: Api, emulator: Emulator, formula: str) -> dict[str, Any]:
    meter = api.meter("usage", formula)
    stamps = [BASE + 60, BASE + 120, BASE + HOUR + 5, BASE + 86400 + 30]
    values = ["2", "5", "1", "10"]
    token = api.token()
    r = api.stream(
        {
            "events": [
                event(f"s{i}", name="usage", value=v, timestamp=format_rfc3339(t))
                for i, (t, v) in enumerate(zip(stamps, values))
            ]
            + [event("other", name="usage", customer="cus_2", timestamp=format_rfc3339(BASE))]
        },
        token,
    )
    assert r.status_code == 200, r.text
    return meter


def _summaries(api: Api, meter: dict[str, Any], **params: Any) -> dict[str, Any]:
    r = api.get(f"/v1/billing/meters/{meter['id']}/event_summaries", customer="cus_1", **params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.parametrize(("formula", "expected"), [("sum", 18.0), ("count", 4.0), ("last", 10.0)])
def test_a_summary_aggregates_by_the_meters_formula(
    api: Api, emulator: Emulator, clock: FakeClock, formula: str, expected: float
) -> None:
    meter = _load(api, emulator, formula)
    body = _summaries(api, meter, start_time=BASE, end_time=BASE + 2 * 86400)
    (summary,) = body["data"]
    assert summary["object"] == "billing.meter_event_summary"
    assert summary["aggregated_value"] == expected
    assert (summary["start_time"], summary["end_time"]) == (BASE, BASE + 2 * 86400)
    assert summary["meter"] == meter["id"] and summary["livemode"] is False


def test_summaries_group_by_hour_and_day(api: Api, emulator: Emulator, clock: FakeClock) -> None:
    meter = _load(api, emulator, "sum")
    hourly = _summaries(
        api,
        meter,
        start_time=BASE,
        end_time=BASE + 2 * 86400,
        value_grouping_window="hour",
        limit=100,
    )
    assert [(s["start_time"] - BASE, s["aggregated_value"]) for s in hourly["data"]] == [
        (0, 7.0),
        (HOUR, 1.0),
        (86400, 10.0),
    ]
    daily = _summaries(
        api, meter, start_time=BASE, end_time=BASE + 2 * 86400, value_grouping_window="day"
    )
    assert [
        (s["start_time"] - BASE, s["end_time"] - BASE, s["aggregated_value"]) for s in daily["data"]
    ] == [(0, 86400, 8.0), (86400, 2 * 86400, 10.0)]


def test_summaries_paginate(api: Api, emulator: Emulator, clock: FakeClock) -> None:
    meter = _load(api, emulator, "count")
    first = _summaries(
        api,
        meter,
        start_time=BASE,
        end_time=BASE + 2 * 86400,
        value_grouping_window="hour",
        limit=2,
    )
    assert len(first["data"]) == 2 and first["has_more"] is True
    rest = _summaries(
        api,
        meter,
        start_time=BASE,
        end_time=BASE + 2 * 86400,
        value_grouping_window="hour",
        limit=2,
        starting_after=first["data"][-1]["id"],
    )
    assert len(rest["data"]) == 1 and rest["has_more"] is False


def test_an_empty_range_still_has_one_summary(api: Api, clock: FakeClock) -> None:
    meter = api.meter("quiet")
    body = _summaries(api, meter, start_time=BASE, end_time=BASE + 60)
    assert [s["aggregated_value"] for s in body["data"]] == [0.0]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"start_time": BASE, "end_time": BASE + 60}, "customer"),
        ({"customer": "c", "end_time": BASE + 60}, "start_time"),
        ({"customer": "c", "start_time": "soon", "end_time": BASE + 60}, "Invalid integer"),
        ({"customer": "c", "start_time": BASE + 1, "end_time": BASE + 60}, "minute"),
        (
            {
                "customer": "c",
                "start_time": BASE + 60,
                "end_time": BASE + 120,
                "value_grouping_window": "hour",
            },
            "hour",
        ),
        (
            {
                "customer": "c",
                "start_time": BASE + HOUR,
                "end_time": BASE + 2 * HOUR,
                "value_grouping_window": "day",
            },
            "day",
        ),
        (
            {
                "customer": "c",
                "start_time": BASE,
                "end_time": BASE + 60,
                "value_grouping_window": "week",
            },
            "value_grouping_window",
        ),
        ({"customer": "c", "start_time": BASE + 60, "end_time": BASE}, "before"),
        ({"customer": "c", "start_time": BASE, "end_time": BASE + 60, "limit": 101}, "limit"),
        (
            {"customer": "c", "start_time": BASE, "end_time": BASE + 60, "starting_after": "x"},
            "starting_after",
        ),
        (
            {"customer": "c", "start_time": BASE, "end_time": BASE + 60, "colour": "red"},
            "unknown parameter",
        ),
    ],
)
def test_bad_summary_queries_are_400s(api: Api, params: dict[str, Any], fragment: str) -> None:
    meter = api.meter("usage")
    r = api.client.get(
        f"/v1/billing/meters/{meter['id']}/event_summaries",
        params=params,
        headers={"Authorization": f"Bearer {SECRET}"},
    )
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]["message"]


def test_summaries_of_an_unknown_meter_are_404(api: Api) -> None:
    r = api.get(
        "/v1/billing/meters/mtr_nope/event_summaries",
        customer="c",
        start_time=BASE,
        end_time=BASE + 60,
    )
    assert r.status_code == 404


# -- adjustments -----------------------------------------------------------


def _cancel(http: httpx.Client, body: Any) -> httpx.Response:
    return http.post(ADJUST, json=body, headers={"Authorization": f"Bearer {SECRET}"})


def test_a_cancelled_event_leaves_totals_and_summaries(
    api: Api, emulator: Emulator, clock: FakeClock
) -> None:
    meter = _load(api, emulator, "sum")
    r = _cancel(
        api.client, {"event_name": "usage", "type": "cancel", "cancel": {"identifier": "s3"}}
    )
    assert r.status_code == 200, r.text
    adjustment = r.json()
    assert adjustment["object"] == "v2.billing.meter_event_adjustment"
    assert adjustment["status"] == "pending" and adjustment["type"] == "cancel"
    assert adjustment["cancel"] == {"identifier": "s3"} and adjustment["event_name"] == "usage"
    assert adjustment["id"] and adjustment["livemode"] is False
    assert emulator.state.total("usage", "cus_1") == Total(8.0, 3)
    body = _summaries(api, meter, start_time=BASE, end_time=BASE + 2 * 86400)
    assert body["data"][0]["aggregated_value"] == 8.0
    # Cancelling twice changes nothing more.
    assert (
        _cancel(
            api.client, {"event_name": "usage", "type": "cancel", "cancel": {"identifier": "s3"}}
        ).status_code
        == 200
    )
    assert emulator.state.total("usage", "cus_1") == Total(8.0, 3)
    assert [e["identifier"] for e in emulator.state.events() if e["cancelled"]] == ["s3"]


def test_an_event_older_than_24_hours_cannot_be_cancelled(
    api: Api, emulator: Emulator, clock: FakeClock
) -> None:
    emulator.state.auto_create_meters = True
    api.stream({"events": [event("late")]})
    clock.advance(86400)
    r = _cancel(
        api.client, {"event_name": "api_calls", "type": "cancel", "cancel": {"identifier": "late"}}
    )
    assert r.status_code == 400 and "24 hours" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (
            {"event_name": "api_calls", "type": "cancel", "cancel": {"identifier": "nope"}},
            404,
            "no meter event",
        ),
        (
            {"event_name": "other", "type": "cancel", "cancel": {"identifier": "known"}},
            404,
            "no meter event",
        ),
        ({"type": "cancel", "cancel": {"identifier": "known"}}, 400, "event_name: is required"),
        (
            {"event_name": "api_calls", "type": "undo", "cancel": {"identifier": "known"}},
            400,
            "type",
        ),
        (
            {"event_name": "api_calls", "type": "cancel", "cancel": {}},
            400,
            "cancel.identifier: is required",
        ),
        ({"event_name": "api_calls", "type": "cancel", "cancel": "known"}, 400, "cancel"),
        (
            {
                "event_name": "api_calls",
                "type": "cancel",
                "cancel": {"identifier": "known"},
                "x": 1,
            },
            400,
            "x: unknown parameter",
        ),
        ([], 400, "body"),
    ],
)
def test_bad_adjustments_are_errors(
    api: Api, emulator: Emulator, body: Any, status: int, fragment: str
) -> None:
    emulator.state.auto_create_meters = True
    api.stream({"events": [event("known")]})
    r = _cancel(api.client, body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]["message"]


def test_adjustments_need_the_secret_key(http: httpx.Client) -> None:
    r = http.post(ADJUST, json={})
    assert r.status_code == 401


# -- routing ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/index.html", "/v2/billing/nope", "/v1/charges", "/_emulator/nope"]
)
def test_an_unknown_path_is_a_404_in_stripes_shape(http: httpx.Client, path: str) -> None:
    r = http.get(path)
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "Unrecognized request URL" in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", STREAM, "POST"),
        ("PUT", SESSION, "POST"),
        ("DELETE", "/v1/billing/meters", "GET, POST"),
        ("POST", "/v1/billing/meters/mtr_x", "GET"),
        ("GET", "/_emulator/reset", "POST"),
    ],
)
def test_a_wrong_method_is_a_405(http: httpx.Client, method: str, path: str, allow: str) -> None:
    r = http.request(method, path)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert r.json()["error"]["code"] == "method_not_allowed"


# -- admin -----------------------------------------------------------------


def test_the_admin_state_reports_totals_requests_and_sessions(
    api: Api, emulator: Emulator, http: httpx.Client
) -> None:
    emulator.state.auto_create_meters = True
    token = api.token()
    api.stream({"events": [event("a", value="2"), event("b", customer="cus_2")]}, token)
    api.stream({"events": [event("a")]}, token)
    api.stream({"events": []}, token)
    state = http.get("/_emulator/state").json()
    assert state["events_stored"] == 2 and state["duplicates"] == 1
    # Sessions survive reset(): earlier tests' tokens may still be active.
    assert state["sessions_created"] == 1 and state["sessions_active"] >= 1
    assert sorted(state["totals"], key=lambda t: t["customer"]) == [
        {"event_name": "api_calls", "customer": "cus_1", "sum": 2.0, "count": 1},
        {"event_name": "api_calls", "customer": "cus_2", "sum": 1.0, "count": 1},
    ]
    assert state["requests"]["meter_event_stream"] == {"200": 2, "400": 1}
    assert state["requests"]["meter_event_session"] == {"200": 1}
    assert state["meters"] == 1 and state["faults"]["fail_500"] == 0.0


def test_the_admin_events_can_be_filtered(api: Api, emulator: Emulator, http: httpx.Client) -> None:
    emulator.state.auto_create_meters = True
    api.stream({"events": [event("a"), event("b", customer="cus_2"), event("c", name="x")]})
    everything = http.get("/_emulator/events").json()
    assert everything["count"] == 3
    by_customer = http.get("/_emulator/events", params={"customer": "cus_2"}).json()
    assert [e["identifier"] for e in by_customer["data"]] == ["b"]
    by_name = http.get("/_emulator/events", params={"event_name": "x"}).json()
    assert [e["identifier"] for e in by_name["data"]] == ["c"]


def test_the_admin_reset_forgets_everything(
    api: Api, emulator: Emulator, http: httpx.Client
) -> None:
    emulator.state.auto_create_meters = True
    api.stream({"events": [event("a")]})
    assert http.post("/_emulator/reset").json() == {"reset": True}
    assert http.get("/_emulator/state").json()["events_stored"] == 0


def test_the_admin_faults_can_be_read_and_changed(emulator: Emulator, http: httpx.Client) -> None:
    assert http.get("/_emulator/faults").json()["fail_500"] == 0.0
    r = http.post("/_emulator/faults", json={"fail_500": 0.25, "should_retry": True})
    assert r.status_code == 200 and r.json()["fail_500"] == 0.25
    assert emulator.faults.fail_500 == 0.25 and emulator.faults.should_retry is True


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"[]", "JSON object"),
        (b'{"explode": true}', "unknown fault"),
        (b'{"fail_500": 3}', "fraction"),
        (b'{"hang": 1}', "must be bool"),
        (b'{"refuse_connections": "yes"}', "refuse_connections"),
        (b'{"refuse_connections": true}', "refuse_seconds"),
        (b"nope", "not valid JSON"),
    ],
)
def test_bad_admin_fault_changes_are_400s(http: httpx.Client, body: bytes, fragment: str) -> None:
    r = http.post("/_emulator/faults", content=body)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]["message"]


def test_the_health_endpoint_answers(http: httpx.Client) -> None:
    assert http.get("/_emulator/health").json() == {"ok": True}


def test_state_is_json_serialisable_with_something_in_every_part(
    api: Api, emulator: Emulator
) -> None:
    emulator.state.auto_create_meters = True
    token = api.token()
    api.stream({"events": [event("a"), event("b", customer="cus_2")]}, token)
    api.stream({"events": [event("a")]}, token)  # a duplicate
    emulator.state.auto_create_meters = False
    api.stream({"events": [event("n1", name="no_such_meter")]}, token)  # a validation error
    emulator.set_faults(fail_500=0.25)
    snapshot = emulator.state.snapshot()
    # Every part holds something, so each one's types are put to the test.
    assert snapshot["events_stored"] == 3 and snapshot["duplicates"] == 1
    assert snapshot["sessions_created"] == 1 and snapshot["meters"] == 1
    assert len(snapshot["totals"]) == 2 and snapshot["validation_errors"]
    assert snapshot["requests"]["meter_event_stream"] and snapshot["faults"]["fail_500"] == 0.25
    assert json.loads(json.dumps(snapshot, allow_nan=False)) == snapshot
