"""Each injected fault, through the Python handle and the admin API."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from helpers.emulator_api import SECRET, Api, assert_v2_error, event
from meterstream.emulator import Emulator, FaultConfig


def test_fail_500_answers_api_error(api: Api, emulator: Emulator) -> None:
    token = api.token()
    emulator.set_faults(fail_500=1.0)
    r = api.stream({"events": [event("a")]}, token)
    assert_v2_error(r, 500, "api_error", "internal_error")
    assert "stripe-should-retry" not in r.headers and "retry-after" not in r.headers
    assert emulator.state.event_count == 0


def test_fail_429_answers_rate_limit_with_optional_headers(api: Api, emulator: Emulator) -> None:
    token = api.token()
    emulator.set_faults(fail_429=1.0, should_retry=True, retry_after=2)
    r = api.stream({"events": [event("a")]}, token)
    assert_v2_error(r, 429, "rate_limit", "rate_limit")
    assert r.headers["stripe-should-retry"] == "true"
    assert r.headers["retry-after"] == "2"
    emulator.set_faults(retry_after=0.25, should_retry=False)
    r = api.stream({"events": [event("a")]}, token)
    assert r.headers["retry-after"] == "0.25" and r.headers["stripe-should-retry"] == "false"


def test_faults_spare_sessions_unless_asked(api: Api, emulator: Emulator) -> None:
    emulator.set_faults(fail_500=1.0)
    assert api.session()["authentication_token"]
    emulator.set_faults(apply_to_sessions=True)
    r = api.client.post(
        "/v2/billing/meter_event_session", headers={"Authorization": f"Bearer {SECRET}"}
    )
    assert r.status_code == 500


def test_expire_next_forces_n_401s_then_recovers(api: Api, emulator: Emulator) -> None:
    token = api.token()
    emulator.set_faults(expire_next=2)
    for _ in range(2):
        r = api.stream({"events": [event("a")]}, token)
        assert_v2_error(r, 401, "temporary_session_expired", "billing_meter_event_session_expired")
    assert emulator.faults.expire_next == 0
    assert api.stream({"events": [event("a")]}, token).status_code == 200


def test_latency_delays_the_answer(api: Api, emulator: Emulator) -> None:
    token = api.token()
    emulator.set_faults(latency_ms=150)
    started = time.monotonic()
    assert api.stream({"events": [event("a")]}, token).status_code == 200
    assert time.monotonic() - started >= 0.15


def test_the_rps_limit_answers_429_past_the_limit(api: Api, emulator: Emulator) -> None:
    token = api.token()
    emulator.set_faults(rps_limit=3)
    statuses = [api.stream({"events": [event(str(i))]}, token).status_code for i in range(8)]
    # Requests straddling a second boundary may get a fresh window: at least
    # 3 pass and at least 2 are refused.
    assert statuses.count(200) >= 3 and statuses.count(429) >= 2
    assert set(statuses) <= {200, 429}


def test_a_hung_request_is_answered_once_hang_is_turned_off(api: Api, emulator: Emulator) -> None:
    token = api.token()
    emulator.set_faults(hang=True)
    answered = threading.Event()
    statuses: list[int] = []

    def call() -> None:
        statuses.append(api.stream({"events": [event("hung")]}, token).status_code)
        answered.set()

    threading.Thread(target=call, daemon=True).start()
    assert not answered.wait(0.3)  # still hanging
    emulator.set_faults(hang=False)
    assert answered.wait(5)
    assert statuses == [200]
    assert emulator.state.event_count == 1


def test_hang_is_released_through_the_admin_api(api: Api, emulator: Emulator) -> None:
    token = api.token()
    with httpx.Client(base_url=emulator.url, timeout=10) as admin:
        admin.post("/_emulator/faults", json={"hang": True})
        done = threading.Event()
        threading.Thread(
            target=lambda: (api.stream({"events": [event("a")]}, token), done.set()),
            daemon=True,
        ).start()
        assert not done.wait(0.2)
        admin.post("/_emulator/faults", json={"hang": False})
        assert done.wait(5)


def test_stopping_the_server_answers_hung_requests() -> None:
    emu = Emulator(auto_create_meters=True, faults=FaultConfig(hang=True))
    emu.start()
    with httpx.Client(base_url=emu.url, timeout=10) as client:
        token = Api(client).token()
        done = threading.Event()

        def call() -> None:
            try:
                Api(client).stream({"events": [event("a")]}, token)
            except httpx.HTTPError:
                pass
            done.set()

        threading.Thread(target=call, daemon=True).start()
        assert not done.wait(0.2)
        started = time.monotonic()
        emu.stop()
        assert done.wait(5)
        assert time.monotonic() - started < 5


def test_refuse_connections_then_listen_again_on_the_same_port() -> None:
    with Emulator(auto_create_meters=True) as emu:
        port = emu.port
        with httpx.Client(base_url=emu.url, timeout=5) as client:
            api = Api(client)
            token = api.token()
            assert api.stream({"events": [event("before")]}, token).status_code == 200
            emu.refuse_connections(True)
            assert emu.refusing
            with pytest.raises(httpx.ConnectError):
                httpx.get(emu.url + "/_emulator/health", timeout=2)
            emu.refuse_connections(False)
            assert emu.port == port
            assert api.stream({"events": [event("after")]}, token).status_code == 200
        assert [e["identifier"] for e in emu.state.events()] == ["before", "after"]


def test_refuse_connections_over_http_resumes_by_itself() -> None:
    with Emulator() as emu:
        r = httpx.post(
            emu.url + "/_emulator/faults", json={"refuse_connections": True, "refuse_seconds": 0.3}
        )
        assert r.status_code == 200
        deadline = time.monotonic() + 5
        refused = False
        while time.monotonic() < deadline and not refused:
            try:
                httpx.get(emu.url + "/_emulator/health", timeout=1)
            except httpx.ConnectError:
                refused = True
        assert refused
        recovered = False
        while time.monotonic() < deadline and not recovered:
            try:
                recovered = httpx.get(emu.url + "/_emulator/health", timeout=1).status_code == 200
            except httpx.ConnectError:
                pass
        assert recovered and not emu.refusing


def test_refusing_a_stopped_emulator_is_an_error() -> None:
    emu = Emulator()
    with pytest.raises(RuntimeError):
        emu.refuse_connections(True)
    with pytest.raises(RuntimeError):
        _ = emu.port


def test_faults_given_at_start_apply_and_survive_reset() -> None:
    with (
        Emulator(faults=FaultConfig(fail_500=1.0)) as emu,
        httpx.Client(base_url=emu.url, timeout=5) as client,
    ):
        api = Api(client)
        token = api.token()
        assert api.stream({"events": [event("a")]}, token).status_code == 500
        emu.set_faults(fail_500=0.0)
        emu.reset()
        assert emu.faults.fail_500 == 1.0
