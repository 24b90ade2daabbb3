"""What the emulator's page shows, as one JSON object built from running aggregates.

Nothing here scans the stored events: totals, hourly buckets, the latest value of
``last`` meters and error counts are kept by :class:`~._records.Store` as events
are indexed, and the latest events are the tail of its append-only list, read
from a cursor. A poll costs what arrived since the previous one, plus the size
of the answer (bounded: ``limit`` events, ``MAX_TOTALS`` rows of totals).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from meterstream.emulator._records import (
    CUSTOMER,
    ERROR,
    ID,
    NAME,
    RECEIVED,
    TS,
    VALUE,
    Record,
    Store,
)
from meterstream.emulator._validate import format_rfc3339

__all__ = ["MAX_EVENTS", "MAX_HOURS", "MAX_TOTALS", "build", "chart_hours", "recent_events"]

#: Most rows of per-customer totals in one answer (the largest values first).
MAX_TOTALS = 200
#: Most events in one answer.
MAX_EVENTS = 200
#: Longest chart, in hours.
MAX_HOURS = 168
#: Error entries and reports listed (the newest).
_RECENT = 20


def _value(formula: str, total: Sequence[float], latest: Optional[Record]) -> float:
    """The whole-range value Stripe's summary would report for one customer."""
    if formula == "count":
        return float(total[1])
    if formula == "last":
        return (latest[VALUE] or 0.0) if latest is not None else 0.0
    return float(total[0])


def chart_hours(now: float, hours: int) -> list[int]:
    """The hours (Unix seconds // 3600) the chart covers, oldest first, ending with now's."""
    last = int(now // 3600)
    return list(range(last - hours + 1, last + 1))


def build(
    store: Store,
    meters: Sequence[Mapping[str, Any]],
    *,
    now: float,
    hours: int,
    customer: Optional[str],
) -> dict[str, Any]:
    """Meters with their hourly usage, and per-customer totals (caller holds the lock).

    Args:
        store: the indexed store.
        meters: the meter objects, newest first.
        now: the clock's time: the chart ends with its hour.
        hours: how many hours the chart covers (1..MAX_HOURS).
        customer: only customers whose id contains this text.
    """
    span = chart_hours(now, hours)
    keys_by_name: dict[str, list[tuple[str, str]]] = {}
    for key, total in store.totals.items():
        if total[1]:
            keys_by_name.setdefault(key[0], []).append(key)
    rows: list[dict[str, Any]] = []
    out_meters: list[dict[str, Any]] = []
    for meter in meters:
        name = meter["event_name"]
        formula = meter["default_aggregation"]["formula"]
        value, events = 0.0, 0
        chart = [[0.0, 0] for _ in span]
        for key in keys_by_name.get(name, ()):
            total = store.totals[key]
            one = _value(formula, total, store.latest.get(key))
            value += one
            events += int(total[1])
            hourly = store.hourly.get(key, {})
            for i, hour in enumerate(span):
                bucket = hourly.get(hour)
                if bucket is not None:
                    chart[i][0] += bucket[0]
                    chart[i][1] += bucket[1]
            if customer is None or customer in key[1]:
                rows.append(
                    {
                        "meter": meter["id"],
                        "event_name": name,
                        "customer": key[1],
                        "formula": formula,
                        "value": one,
                        "events": int(total[1]),
                    }
                )
        out_meters.append(
            {
                "id": meter["id"],
                "event_name": name,
                "display_name": meter["display_name"],
                "formula": formula,
                "customers": len(keys_by_name.get(name, ())),
                "value": value,
                "events": events,
                # A `last` meter's hourly value is not a sum: its chart counts events.
                "hourly": [
                    {
                        "start": hour * 3600,
                        "value": float(c[1]) if formula in ("count", "last") else c[0],
                        "events": int(c[1]),
                    }
                    for hour, c in zip(span, chart)
                ],
            }
        )
    rows.sort(key=lambda r: (r["event_name"], -r["value"], r["customer"]))
    shown: list[dict[str, Any]] = []
    per_name: dict[str, int] = {}
    for row in rows:
        # Each meter's largest customers, so one busy meter does not hide the rest.
        n = per_name.get(row["event_name"], 0)
        if n < MAX_TOTALS // max(1, len(out_meters)) or len(rows) <= MAX_TOTALS:
            shown.append(row)
        per_name[row["event_name"]] = n + 1
    errors = store.errors
    return {
        "customers": len({key[1] for keys in keys_by_name.values() for key in keys}),
        "meters": out_meters,
        "totals": {"count": len(rows), "data": shown},
        "errors": {
            "count": len(errors),
            "by_code": dict(sorted(store.error_counts.items())),
            "recent": [dict(e) for e in reversed(errors[-_RECENT:])],
        },
    }


def recent_events(store: Store, after: int, limit: int) -> dict[str, Any]:
    """The events stored after position *after*, newest first, at most *limit*.

    ``cursor`` is the position to ask from next time. A cursor past the end
    means the state was reset: the answer starts over and says ``reset``.
    """
    events, payloads, cancelled = store.events, store.payloads, store.cancelled
    end = len(events)
    reset = after > end
    start = max(0 if reset else after, end - limit)
    data = [_event(events[i], payloads[i], cancelled) for i in range(end - 1, start - 1, -1)]
    return {"cursor": end, "reset": reset, "data": data}


def _event(rec: Record, payload: Mapping[str, str], cancelled: set[str]) -> dict[str, Any]:
    return {
        "identifier": rec[ID],
        "event_name": rec[NAME],
        "customer": rec[CUSTOMER],
        "value": rec[VALUE],
        "timestamp": format_rfc3339(rec[TS]),
        "received_at": format_rfc3339(rec[RECEIVED]),
        "error": rec[ERROR],
        "cancelled": rec[ID] in cancelled,
        "payload": dict(payload),
    }
