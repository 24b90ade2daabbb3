"""Billing meters (v1, form-encoded) and their event summaries."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Optional

from meterstream._digits import too_many_digits
from meterstream.emulator._errors import StripeError, bad_request

__all__ = [
    "DEFAULT_CUSTOMER_KEY",
    "DEFAULT_VALUE_KEY",
    "SummaryQuery",
    "list_object",
    "new_meter",
    "not_found",
    "parse_summary_query",
    "parse_value",
    "summarize",
]

DEFAULT_CUSTOMER_KEY = "stripe_customer_id"
DEFAULT_VALUE_KEY = "value"
FORMULAS = ("sum", "count", "last")
_WINDOWS = {"hour": 3600, "day": 86400}
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")

_MeterParams = dict[str, str]


def parse_value(text: str) -> tuple[Optional[float], Optional[str]]:
    """``(value, None)`` for a numeric payload value, else ``(None, error code)``."""
    # What counts as a digit is meterstream._digits' one definition, the
    # record path's too: what the library accepts, the emulator bills.
    if text.isdigit() and text.isascii():
        if len(text) > 15 and too_many_digits(text):
            return None, "meter_event_value_too_many_digits"
        return float(text), None
    if _NUMBER_RE.match(text) is None:
        return None, "meter_event_invalid_value"
    if too_many_digits(text):
        return None, "meter_event_value_too_many_digits"
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        return None, "meter_event_invalid_value"
    return value, None


def new_meter(params: Mapping[str, str], meter_id: str, created: int) -> dict[str, Any]:
    """Build a ``billing.meter`` from v1 form parameters; raise a 400 for bad ones."""
    known = {
        "display_name",
        "event_name",
        "default_aggregation[formula]",
        "customer_mapping[event_payload_key]",
        "customer_mapping[type]",
        "value_settings[event_payload_key]",
        "event_time_window",
    }
    for key in params:
        if key not in known and not key.startswith("expand["):
            raise bad_request(
                f"Received unknown parameter: {key}", code="parameter_unknown", param=key
            )
    for key in ("display_name", "event_name", "default_aggregation[formula]"):
        if not params.get(key):
            raise bad_request(
                f"Missing required param: {key}.", code="parameter_missing", param=key
            )
    formula = params["default_aggregation[formula]"]
    if formula not in FORMULAS:
        raise bad_request(
            f"Invalid default_aggregation[formula]: must be one of {', '.join(FORMULAS)}",
            code="parameter_invalid",
            param="default_aggregation[formula]",
        )
    mapping_type = params.get("customer_mapping[type]", "by_id")
    if mapping_type != "by_id":
        raise bad_request(
            "Invalid customer_mapping[type]: must be by_id", param="customer_mapping[type]"
        )
    window = params.get("event_time_window") or None
    if window is not None and window not in _WINDOWS:
        raise bad_request(
            "Invalid event_time_window: must be one of day, hour", param="event_time_window"
        )
    event_name = params["event_name"]
    if len(event_name) > 100:
        raise bad_request("event_name: must be at most 100 characters", param="event_name")
    return {
        "id": meter_id,
        "object": "billing.meter",
        "created": created,
        "customer_mapping": {
            "event_payload_key": params.get("customer_mapping[event_payload_key]")
            or DEFAULT_CUSTOMER_KEY,
            "type": "by_id",
        },
        "default_aggregation": {"formula": formula},
        "display_name": params["display_name"],
        "event_name": event_name,
        "event_time_window": window,
        "livemode": False,
        "status": "active",
        "status_transitions": {"deactivated_at": None},
        "updated": created,
        "value_settings": {
            "event_payload_key": params.get("value_settings[event_payload_key]")
            or DEFAULT_VALUE_KEY
        },
    }


class SummaryQuery(NamedTuple):
    customer: str
    start_time: int
    end_time: int
    window: Optional[str]
    limit: int
    starting_after: Optional[str]


def _int_param(params: Mapping[str, str], key: str) -> int:
    raw = params[key]
    try:
        return int(raw)
    except ValueError:
        raise bad_request(
            f"Invalid integer: {raw[:40]}", code="parameter_invalid_integer", param=key
        ) from None


def parse_summary_query(params: Mapping[str, str]) -> SummaryQuery:
    """Check the query of ``GET /v1/billing/meters/{id}/event_summaries``."""
    known = {
        "customer",
        "start_time",
        "end_time",
        "value_grouping_window",
        "limit",
        "starting_after",
        "ending_before",
    }
    for key in params:
        if key not in known and not key.startswith("expand["):
            raise bad_request(
                f"Received unknown parameter: {key}", code="parameter_unknown", param=key
            )
    for key in ("customer", "start_time", "end_time"):
        if not params.get(key):
            raise bad_request(
                f"Missing required param: {key}.", code="parameter_missing", param=key
            )
    start, end = _int_param(params, "start_time"), _int_param(params, "end_time")
    window = params.get("value_grouping_window") or None
    align, what = 60, "minute"
    if window is not None:
        if window not in _WINDOWS:
            raise bad_request(
                "Invalid value_grouping_window: must be one of day, hour",
                param="value_grouping_window",
            )
        align, what = _WINDOWS[window], "hour" if window == "hour" else "day (UTC midnight)"
    for key, value in (("start_time", start), ("end_time", end)):
        if value % align:
            raise bad_request(f"{key} must be aligned to {what} boundaries, got {value}", param=key)
    if start >= end:
        raise bad_request("start_time must be before end_time", param="start_time")
    limit = 10
    if params.get("limit"):
        limit = _int_param(params, "limit")
        if not 1 <= limit <= 100:
            raise bad_request("limit must be between 1 and 100", param="limit")
    return SummaryQuery(
        params["customer"], start, end, window, limit, params.get("starting_after") or None
    )


def summarize(
    meter: Mapping[str, Any],
    points: Iterable[tuple[float, float, Optional[float]]],
    query: SummaryQuery,
) -> list[dict[str, Any]]:
    """Aggregate ``(timestamp, received, value)`` points per the meter's formula.

    Without a window there is one summary for the whole range (even when
    empty); with ``hour`` / ``day`` one per window that holds events.
    Summaries are in ascending ``start_time`` order.
    """
    formula = meter["default_aggregation"]["formula"]
    step = _WINDOWS[query.window] if query.window else query.end_time - query.start_time
    buckets: dict[int, list[tuple[float, float, Optional[float]]]] = {}
    for point in points:
        ts = point[0]
        if query.start_time <= ts < query.end_time:
            start = query.start_time + int((ts - query.start_time) // step) * step
            buckets.setdefault(start, []).append(point)
    if not query.window and not buckets:
        buckets[query.start_time] = []
    out: list[dict[str, Any]] = []
    for start in sorted(buckets):
        items = buckets[start]
        if formula == "count":
            value = float(len(items))
        elif formula == "last":
            value, best = 0.0, (float("-inf"), float("-inf"))
            for ts, received, v in items:  # ties go to the later one
                if (ts, received) >= best:
                    best, value = (ts, received), v or 0.0
        else:
            value = float(sum(p[2] or 0.0 for p in items))
        end = min(start + step, query.end_time)
        out.append(
            {
                "id": f"mtrusg_{meter['id'][4:]}_{query.customer}_{start}_{end}",
                "object": "billing.meter_event_summary",
                "aggregated_value": value,
                "end_time": end,
                "livemode": False,
                "meter": meter["id"],
                "start_time": start,
            }
        )
    return out


def list_object(
    items: Sequence[dict[str, Any]], url: str, limit: int, starting_after: Optional[str]
) -> dict[str, Any]:
    """A paginated v1 list object; raise a 400 when ``starting_after`` is unknown."""
    begin = 0
    if starting_after is not None:
        for i, item in enumerate(items):
            if item["id"] == starting_after:
                begin = i + 1
                break
        else:
            raise bad_request(
                f"starting_after: no object with id {starting_after!r} in this list",
                code="resource_missing",
                param="starting_after",
            )
    page = list(items[begin : begin + limit])
    return {"object": "list", "data": page, "has_more": begin + limit < len(items), "url": url}


def not_found(what: str, ident: str) -> StripeError:
    return StripeError(
        404,
        "invalid_request_error",
        f"No such {what}: '{ident}'",
        code="resource_missing",
        param="id",
    )
