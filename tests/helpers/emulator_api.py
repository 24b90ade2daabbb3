"""Helpers for the emulator tests: a fake clock, wire-shape events, HTTP calls."""

from __future__ import annotations

from typing import Any, Optional

import httpx

SECRET = "sk_test_emulator"
NOW = 1_750_000_000.0  # 2025-06-15T15:06:40Z, a fixed "now" for the fake clock


class FakeClock:
    """A wall clock that moves only when told to."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Api:
    """Small helpers speaking the emulator's wire format."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def session(self, key: str = SECRET) -> dict[str, Any]:
        r = self.client.post(
            "/v2/billing/meter_event_session", headers={"Authorization": f"Bearer {key}"}
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def token(self) -> str:
        token: str = self.session()["authentication_token"]
        return token

    def stream(
        self, body: Any, token: Optional[str] = None, *, raw: Optional[bytes] = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token()}"}
        if raw is not None:
            return self.client.post(
                "/v2/billing/meter_event_stream",
                content=raw,
                headers={**headers, "Content-Type": "application/json"},
            )
        return self.client.post("/v2/billing/meter_event_stream", json=body, headers=headers)

    def meter(self, event_name: str, formula: str = "sum", **extra: str) -> dict[str, Any]:
        data = {
            "display_name": event_name,
            "event_name": event_name,
            "default_aggregation[formula]": formula,
            **extra,
        }
        r = self.client.post(
            "/v1/billing/meters", data=data, headers={"Authorization": f"Bearer {SECRET}"}
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(path, params=params, headers={"Authorization": f"Bearer {SECRET}"})


def event(
    identifier: Optional[str] = None,
    *,
    name: str = "api_calls",
    customer: str = "cus_1",
    value: str = "1",
    timestamp: Optional[str] = None,
    **payload: str,
) -> dict[str, Any]:
    """One wire-shape meter event."""
    ev: dict[str, Any] = {
        "event_name": name,
        "payload": {"stripe_customer_id": customer, "value": value, **payload},
    }
    if identifier is not None:
        ev["identifier"] = identifier
    if timestamp is not None:
        ev["timestamp"] = timestamp
    return ev


def assert_v2_error(response: httpx.Response, status: int, type_: str, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    message: str = error["message"]
    return message
