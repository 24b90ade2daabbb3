"""The emulator's meters: by id, and what the stream needs of each by event name.

Not thread-safe: the emulator state calls it under its lock.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from meterstream.emulator._errors import bad_request
from meterstream.emulator._meters import list_object, new_meter, not_found
from meterstream.emulator._records import MeterKeys

__all__ = ["MeterRegistry"]


class MeterRegistry:
    """Active meters, oldest first, and one event name's keys and formula."""

    __slots__ = ("_by_id", "_keys", "_new_id")

    def __init__(self, new_id: Callable[[], str]) -> None:
        self._new_id = new_id
        self._by_id: dict[str, dict[str, Any]] = {}
        self._keys: dict[str, MeterKeys] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def keys(self, event_name: str) -> Optional[MeterKeys]:
        """(customer key, value key, formula) of *event_name*'s meter, or None."""
        return self._keys.get(event_name)

    def create(self, params: dict[str, str], now: float) -> dict[str, Any]:
        """A new meter from v1 form *params*; a 400 for a duplicate event name."""
        meter = new_meter(params, self._new_id(), int(now))
        if meter["event_name"] in self._keys:
            raise bad_request(
                f"An active meter with event_name '{meter['event_name']}' already exists.",
                code="resource_already_exists",
                param="event_name",
            )
        self._add(meter)
        return meter

    def auto(self, event_name: str, now: float) -> MeterKeys:
        """Create a sum meter for *event_name* (``auto_create_meters``); its keys."""
        params = {
            "display_name": event_name,
            "event_name": event_name,
            "default_aggregation[formula]": "sum",
        }
        self._add(new_meter(params, self._new_id(), int(now)))
        return self._keys[event_name]

    def _add(self, meter: dict[str, Any]) -> None:
        self._by_id[meter["id"]] = meter
        self._keys[meter["event_name"]] = (
            meter["customer_mapping"]["event_payload_key"],
            meter["value_settings"]["event_payload_key"],
            meter["default_aggregation"]["formula"],
        )

    def deactivate(self, meter_id: str, now: float) -> dict[str, Any]:
        """Deactivate a meter: its event name has no active meter any more."""
        meter = self._by_id.get(meter_id)
        if meter is None:
            raise not_found("billing meter", meter_id)
        if meter["status"] == "active":
            meter["status"] = "inactive"
            meter["status_transitions"] = {"deactivated_at": int(now)}
            meter["updated"] = int(now)
            self._keys.pop(meter["event_name"], None)
        return dict(meter)

    def get(self, meter_id: str) -> dict[str, Any]:
        """A copy of one meter; a 404 for an unknown id."""
        meter = self._by_id.get(meter_id)
        if meter is None:
            raise not_found("billing meter", meter_id)
        return dict(meter)

    def all(self) -> list[dict[str, Any]]:
        """Copies of every meter, newest first (as Stripe lists them)."""
        return [dict(m) for m in reversed(self._by_id.values())]

    def ids_by_event_name(self) -> dict[str, str]:
        return {m["event_name"]: m["id"] for m in self._by_id.values()}

    @staticmethod
    def page(items: list[dict[str, Any]], params: dict[str, str]) -> dict[str, Any]:
        """``GET /v1/billing/meters`` over *items*: ``limit`` 1..100, ``status``."""
        raw = params.get("limit") or "10"
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 100):
            raise bad_request("limit must be between 1 and 100", param="limit")
        if params.get("status"):
            items = [m for m in items if m["status"] == params["status"]]
        return list_object(items, "/v1/billing/meters", int(raw), params.get("starting_after"))
