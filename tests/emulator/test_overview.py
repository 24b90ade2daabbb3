"""The page's JSON (``GET /_emulator/overview``) and the page's files, without a browser."""

from __future__ import annotations

import json

import httpx
import pytest

from helpers.emulator_api import NOW, Api, FakeClock, event
from meterstream.emulator import Emulator, EmulatorState
from meterstream.emulator._validate import format_rfc3339


def _state() -> EmulatorState:
    return EmulatorState(clock=FakeClock(), auto_create_meters=True)


def _at(seconds_ago: float) -> str:
    return format_rfc3339(NOW - seconds_ago)


def test_totals_and_hourly_chart_follow_the_events() -> None:
    state = _state()
    state.ingest(
        {
            "events": [
                event("a", customer="cus_1", value="2", timestamp=_at(0)),
                event("b", customer="cus_1", value="3", timestamp=_at(3600)),
                event("c", customer="cus_2", value="5", timestamp=_at(3600)),
            ]
        }
    )
    out = state.overview(hours=3)
    (meter,) = out["meters"]
    assert (meter["event_name"], meter["value"], meter["events"], meter["customers"]) == (
        "api_calls",
        10.0,
        3,
        2,
    )
    hour = int(NOW // 3600) * 3600
    assert [(h["start"], h["value"], h["events"]) for h in meter["hourly"]] == [
        (hour - 7200, 0.0, 0),
        (hour - 3600, 8.0, 2),
        (hour, 2.0, 1),
    ]
    rows = [(r["customer"], r["value"], r["events"]) for r in out["totals"]["data"]]
    assert rows == [("cus_1", 5.0, 2), ("cus_2", 5.0, 1)]
    assert out["customers"] == 2
    assert out["counters"]["events_stored"] == 3


def test_totals_are_what_stripes_summaries_report_for_each_formula() -> None:
    state = _state()
    state.auto_create_meters = False
    for name, formula in (("calls", "count"), ("seats", "last")):
        state.create_meter(
            {"display_name": name, "event_name": name, "default_aggregation[formula]": formula}
        )
    state.ingest(
        {
            "events": [
                event("c1", name="calls", value="7"),
                event("c2", name="calls", value="7"),
                event("s1", name="seats", value="4", timestamp=_at(60)),
                event("s2", name="seats", value="9", timestamp=_at(0)),
                event("s3", name="seats", value="2", timestamp=_at(120)),  # older: not last
            ]
        }
    )
    values = {r["event_name"]: r["value"] for r in state.overview()["totals"]["data"]}
    assert values == {"calls": 2.0, "seats": 9.0}
    state.cancel_event({"event_name": "seats", "type": "cancel", "cancel": {"identifier": "s2"}})
    state.cancel_event({"event_name": "calls", "type": "cancel", "cancel": {"identifier": "c1"}})
    out = state.overview()
    values = {r["event_name"]: r["value"] for r in out["totals"]["data"]}
    assert values == {"calls": 1.0, "seats": 4.0}
    assert out["counters"]["cancelled"] == 2
    calls = next(m for m in out["meters"] if m["event_name"] == "calls")
    assert sum(h["events"] for h in calls["hourly"]) == 1


def test_events_come_newest_first_from_a_cursor() -> None:
    state = _state()
    state.ingest({"events": [event(f"e{i}") for i in range(5)]})
    first = state.overview(limit=3)["events"]
    assert [e["identifier"] for e in first["data"]] == ["e4", "e3", "e2"]
    assert (first["cursor"], first["reset"]) == (5, False)
    state.ingest({"events": [event("e5"), event("e6")]})
    second = state.overview(after=first["cursor"])["events"]
    assert [e["identifier"] for e in second["data"]] == ["e6", "e5"]
    assert second["cursor"] == 7
    assert state.overview(after=7)["events"]["data"] == []
    state.reset()
    state.auto_create_meters = True
    state.ingest({"events": [event("f0")]})
    after_reset = state.overview(after=7)["events"]
    assert after_reset["reset"] is True
    assert [e["identifier"] for e in after_reset["data"]] == ["f0"]


def test_invalid_events_appear_as_errors_and_reports() -> None:
    state = _state()
    state.ingest({"events": [event("ok"), event("bad", value="many")]})
    out = state.overview()
    assert out["errors"]["count"] == 1
    assert out["errors"]["by_code"] == {"meter_event_invalid_value": 1}
    assert out["errors"]["recent"][0]["identifier"] == "bad"
    (report,) = out["reports"]["recent"]
    assert report["type"] == "v1.billing.meter.error_report_triggered"
    assert report["error_count"] == 1
    assert {e["identifier"]: e["error"] for e in out["events"]["data"]} == {
        "bad": "meter_event_invalid_value",
        "ok": None,
    }


def test_a_customer_filter_narrows_the_totals_only() -> None:
    state = _state()
    state.ingest({"events": [event("a", customer="cus_alpha"), event("b", customer="cus_beta")]})
    out = state.overview(customer="alp")
    assert [r["customer"] for r in out["totals"]["data"]] == ["cus_alpha"]
    assert out["totals"]["count"] == 1
    assert out["meters"][0]["value"] == 2.0


def test_sections_show_what_other_sides_of_the_emulator_provide() -> None:
    state = _state()
    state.page_sections["metronome"] = lambda: {"billable_metrics": [{"id": "bm_1"}]}
    assert state.overview()["sections"] == {"metronome": {"billable_metrics": [{"id": "bm_1"}]}}


def test_requests_refused_by_injected_faults_are_counted(emulator: Emulator, api: Api) -> None:
    token = api.token()
    emulator.set_faults(fail_500=1.0)
    assert api.stream({"events": [event()]}, token).status_code == 500
    emulator.set_faults(fail_500=0.0, expire_next=2, reject_identifier="no")
    api.stream({"events": [event()]}, token)
    api.stream({"events": [event()]}, token)
    assert api.stream({"events": [event("no")]}, token).status_code == 400
    refused = emulator.state.overview()["refused"]
    assert refused == [
        {"endpoint": "meter_event_stream", "status": 400, "code": "parameter_invalid", "count": 1},
        {
            "endpoint": "meter_event_stream",
            "status": 401,
            "code": "billing_meter_event_session_expired",
            "count": 2,
        },
        {"endpoint": "meter_event_stream", "status": 500, "code": "internal_error", "count": 1},
    ]
    emulator.reset()
    assert emulator.state.overview()["refused"] == []


@pytest.mark.parametrize(
    ("path", "kind", "text"),
    [
        ("/", "text/html", b"<title>meterstream emulator</title>"),
        ("/_emulator/page/page.js", "text/javascript", b"/_emulator/overview"),
        ("/_emulator/page/page.css", "text/css", b"--accent"),
    ],
)
def test_the_page_is_served_from_the_package(
    http: httpx.Client, path: str, kind: str, text: bytes
) -> None:
    r = http.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(kind)
    assert r.headers.get_list("content-type") == [r.headers["content-type"]]
    assert text in r.content


def test_the_overview_route_answers_json_and_checks_its_query(http: httpx.Client, api: Api) -> None:
    api.meter("api_calls")
    api.stream({"events": [event("x")]})
    r = http.get("/_emulator/overview", params={"after": "0", "limit": "5"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["events"]["data"][0]["identifier"] == "x"
    assert body["counters"]["sessions_created"] >= 1
    bad = http.get("/_emulator/overview", params={"after": "-1"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "after"
    assert http.get("/_emulator/page/secret.py").status_code == 404


def test_the_metronome_side_has_its_section_with_metrics_and_events_per_type() -> None:
    state = _state()
    state.metronome.create_metric(
        {
            "name": "Search calls",
            "aggregation_type": "SUM",
            "aggregation_key": "value",
            "event_type_filter": {"in_values": ["ai_search_api"]},
        }
    )
    body = [
        {
            "transaction_id": f"t{i}",
            "customer_id": "cus_1",
            "event_type": "ai_search_api" if i < 3 else "gpu_seconds",
            "timestamp": "2025-06-15T15:00:00Z",
            "properties": {"value": "1"},
        }
        for i in range(5)
    ]
    state.metronome.ingest(json.dumps(body).encode())
    state.metronome.ingest(json.dumps(body[:1]).encode())  # a duplicate, ignored
    section = state.overview()["sections"]["metronome"]
    assert section["title"] == "Metronome"
    assert section["billable_metrics"] == [
        {
            "name": "Search calls",
            "aggregation": "SUM(value)",
            "event types": "ai_search_api",
            "group keys": "",
        }
    ]
    assert section["events_by_type"] == [
        {"event type": "ai_search_api", "events": 3},
        {"event type": "gpu_seconds", "events": 2},
    ]
    assert "5 events stored, 1 duplicates ignored" in section["summary"]
