"""Stripe's asynchronous error reports, as v2 core events.

Stripe answers the stream 200 and validates afterwards; the events it then
rejects are reported as ``v1.billing.meter.no_meter_found`` (no meter for the
event name) and ``v1.billing.meter.error_report_triggered`` (one per meter)
events, covering a *validation window*. This module turns the errors the
store decided into such events: the full event (what ``GET
/v2/core/events/{id}`` answers) and the thin one (what a webhook receives).
Shapes follow stripe-python's ``stripe/events/_v1_billing_meter_*_event.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Optional

from meterstream.emulator._validate import format_rfc3339

__all__ = [
    "ERROR_REPORT_TRIGGERED",
    "NO_METER_FOUND",
    "SAMPLE_LIMIT",
    "Reports",
    "thin_event",
]

ERROR_REPORT_TRIGGERED = "v1.billing.meter.error_report_triggered"
NO_METER_FOUND = "v1.billing.meter.no_meter_found"

#: Identifiers listed per error code in one report. Stripe calls them
#: *sample* errors and does not document how many it sends; the emulator
#: lists every rejected event, starting a further report past this many, so a
#: test can follow each identifier.
SAMPLE_LIMIT = 100


def thin_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The thin form of a full event: what an event destination receives."""
    return {k: v for k, v in event.items() if k != "data"}


class Reports:
    """The events the emulator has generated, oldest first (caller holds the lock).

    Args:
        new_id: makes an event id (``evt_...``).
    """

    def __init__(self, new_id: Callable[[], str]) -> None:
        self._new_id = new_id
        self.events: list[dict[str, Any]] = []
        self.by_id: dict[str, dict[str, Any]] = {}
        self.reported = 0  # how many of the store's errors are in a report
        self.window_start: Optional[float] = None

    def clear(self) -> None:
        self.events.clear()
        self.by_id.clear()
        self.reported = 0
        self.window_start = None

    def collect(
        self, errors: list[dict[str, Any]], meter_ids: Mapping[str, str], now: float
    ) -> list[dict[str, Any]]:
        """Report the errors not reported yet; return the new full events.

        Args:
            errors: the store's error entries (``code``, ``message``,
                ``identifier``, ``event_name``, ``received``), in arrival order.
            meter_ids: meter id by event name.
            now: the end of this validation window.
        """
        fresh = errors[self.reported :]
        self.reported = len(errors)
        start = self.window_start
        if not fresh:
            return []
        if start is None:
            start = min(e["received"] for e in fresh)
        self.window_start = now
        groups: dict[Optional[str], list[dict[str, Any]]] = {}
        for entry in fresh:
            meter = None if entry["code"] == "no_meter" else meter_ids.get(entry["event_name"])
            groups.setdefault(meter, []).append(entry)
        new: list[dict[str, Any]] = []
        for meter, entries in groups.items():
            for chunk in _chunks(entries):
                event = self._event(meter, chunk, start, now)
                self.events.append(event)
                self.by_id[event["id"]] = event
                new.append(event)
        return new

    def _event(
        self, meter: Optional[str], entries: list[dict[str, Any]], start: float, end: float
    ) -> dict[str, Any]:
        by_code: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            by_code.setdefault(entry["code"], []).append(entry)
        error_types = [
            {
                "code": code,
                "error_count": len(found),
                "sample_errors": [
                    {"error_message": e["message"], "request": {"identifier": e["identifier"]}}
                    for e in found
                ],
            }
            for code, found in by_code.items()
        ]
        count = len(entries)
        what = f"meter {meter}" if meter else "event names with no meter"
        event: dict[str, Any] = {
            "id": self._new_id(),
            "object": "v2.core.event",
            "type": NO_METER_FOUND if meter is None else ERROR_REPORT_TRIGGERED,
            "created": format_rfc3339(end),
            "livemode": False,
            "context": None,
            "reason": None,
        }
        if meter is not None:
            event["related_object"] = {
                "id": meter,
                "type": "billing.meter",
                "url": f"/v1/billing/meters/{meter}",
            }
        event["data"] = {
            "developer_message_summary": (
                f"{count} meter event{'s' if count != 1 else ''} for {what} "
                f"failed validation ({', '.join(by_code)})."
            ),
            "reason": {"error_count": count, "error_types": error_types},
            "validation_start": format_rfc3339(start),
            "validation_end": format_rfc3339(end),
        }
        return event

    def page(self, limit: int, page: Optional[str]) -> dict[str, Any]:
        """``GET /v2/core/events``: newest first, as a v2 list with ``next_page_url``."""
        ordered = list(reversed(self.events))
        start = 0
        if page:
            index = next((i for i, e in enumerate(ordered) if e["id"] == page), None)
            start = 0 if index is None else index + 1
        items = ordered[start : start + limit]
        more = start + limit < len(ordered)
        return {
            "data": items,
            "next_page_url": (f"/v2/core/events?limit={limit}&page={items[-1]['id']}")
            if more and items
            else None,
            "previous_page_url": None,
        }


def _chunks(entries: Iterable[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    counts: dict[str, int] = {}
    chunk: list[dict[str, Any]] = []
    for entry in entries:
        code = entry["code"]
        if counts.get(code, 0) >= SAMPLE_LIMIT:
            yield chunk
            chunk, counts = [], {}
        chunk.append(entry)
        counts[code] = counts.get(code, 0) + 1
    if chunk:
        yield chunk
