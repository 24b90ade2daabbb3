"""Reconciliation with Metronome, and across destinations.

:class:`MetronomeSummaries` reads Metronome's ``POST /v1/usage`` in the shape
reconciliation reads Stripe's meter event summaries (:class:`Summaries`), so
the spool's accepted history is compared with Metronome as it is with
Stripe. A billable metric stands for a meter by event name: its
``event_type_filter.in_values`` names the event, and its aggregation maps to
a meter's formula (``SUM`` -> sum, ``COUNT`` -> count, ``LATEST`` -> last;
other aggregations have no Stripe counterpart and are not compared). A
customer is found by Metronome id or ingest alias.

:func:`reconcile_destinations` compares two destinations with each other,
per customer, event name and window, without a spool.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Optional

from meterstream._exporters.metronome import MetronomeAPI
from meterstream._truth.reconcile import (
    WINDOWS,
    Reconciliation,
    Row,
    Summaries,
    active_meters,
    check_range,
)

__all__ = ["MetronomeSummaries", "metronome_aliases", "reconcile_destinations"]

_FORMULAS = {"SUM": "sum", "COUNT": "count", "LATEST": "last"}
_DAY = 86400


def _seconds(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def _iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class MetronomeSummaries:
    """Metronome's usage, read as :class:`Summaries` (meters and their summaries).

    Args:
        api: a :class:`MetronomeAPI` (token, base, proxy, CA bundle).
    """

    def __init__(self, api: MetronomeAPI) -> None:
        self._api = api
        self._customers: Optional[list[dict[str, Any]]] = None

    def meters(self) -> list[dict[str, Any]]:
        """One entry per event name a billable metric counts, as Stripe shows a meter."""
        out: list[dict[str, Any]] = []
        for metric in self._api.billable_metrics():
            formula = _FORMULAS.get(str(metric.get("aggregation_type", "")).upper())
            names = (metric.get("event_type_filter") or {}).get("in_values") or []
            if formula is None or metric.get("archived_at"):
                continue
            for name in names:
                out.append(
                    {
                        "id": metric["id"],
                        "event_name": name,
                        "status": "active",
                        "default_aggregation": {"formula": formula},
                    }
                )
        return out

    def customers(self) -> list[dict[str, Any]]:
        """Metronome's customers (read once)."""
        if self._customers is None:
            self._customers = self._api.customers()
        return self._customers

    def _customer_id(self, customer: str) -> Optional[str]:
        for found in self.customers():
            if found["id"] == customer or customer in (found.get("ingest_aliases") or ()):
                return str(found["id"])
        return None

    def event_summaries(
        self,
        meter_id: str,
        customer: str,
        start_time: int,
        end_time: int,
        window: Optional[str] = None,
    ) -> list[dict[str, Any]]:
        """The metric's value per window for *customer* (an id or ingest alias).

        Metronome's bounds are UTC midnights: the days around the range are
        read, and the windows inside it kept.
        """
        ident = self._customer_id(customer)
        if ident is None:
            return []
        low = start_time - start_time % _DAY
        high = max(end_time + (-end_time) % _DAY, low + _DAY)
        rows = self._api.usage(
            _iso(low),
            _iso(high),
            "HOUR" if window == "hour" else "DAY",
            customer_ids=[ident],
            billable_metric_ids=[meter_id],
        )
        out = []
        for row in rows:
            start = _seconds(row["start_timestamp"])
            if start_time <= start < end_time and row.get("value") is not None:
                out.append({"start_time": start, "aggregated_value": row["value"]})
        return out


def metronome_aliases(summaries: MetronomeSummaries) -> list[str]:
    """Every ingest alias of Metronome's customers: who a parallel run bills at both."""
    return sorted({a for c in summaries.customers() for a in c.get("ingest_aliases") or ()})


def reconcile_destinations(
    left: Summaries,
    right: Summaries,
    customers: Iterable[str],
    since: int,
    until: int,
    *,
    labels: tuple[str, str] = ("stripe", "metronome"),
    window: str = "day",
    event_name: Optional[str] = None,
    grace: float = 600.0,
    now: float,
    accepted: Optional[Iterable[tuple[str, str, Any, float, float]]] = None,
) -> Reconciliation:
    """Compare two destinations, per customer, event name (meter / billable
    metric) and window.

    With *accepted* (a spool's ``accepted_between`` rows), a window holding
    an event accepted less than *grace* seconds ago is settling; without, a
    window that ended less than *grace* seconds ago is: either side may not
    have counted its newest events yet. An event name metered at only one
    side is listed in ``no_meter``.

    Raises:
        ValueError: unaligned times or an unknown window (:func:`check_range`).
        meterstream.DeliveryError: a destination could not be read.
    """
    problem = check_range(since, until, window)
    if problem:
        raise ValueError(problem)
    step = WINDOWS[window]
    newest: Optional[dict[tuple[str, str, int], float]] = None
    if accepted is not None:
        newest = {}
        for name, customer, _value, ts, accepted_at in accepted:
            key = (name, customer, since + int((ts - since) // step) * step)
            newest[key] = max(newest.get(key, 0.0), accepted_at)
    ours, theirs = active_meters(left.meters()), active_meters(right.meters())
    names = set(ours) | set(theirs)
    if event_name is not None:
        names &= {event_name}
    result = Reconciliation(labels=labels, no_meter_where="at both destinations")
    for name in sorted(names):
        if name not in ours or name not in theirs:
            result.no_meter.add(name)
            continue
        for customer in sorted(set(customers)):
            sides = []
            for summaries, meter in ((left, ours[name]), (right, theirs[name])):
                values: dict[int, Decimal] = {}
                for summary in summaries.event_summaries(
                    meter["id"], customer, since, until, window
                ):
                    values[int(summary["start_time"])] = Decimal(
                        repr(float(summary["aggregated_value"]))
                    )
                sides.append(values)
            for start in sorted(set(sides[0]) | set(sides[1])):
                if newest is None:
                    settling = start + step > now - grace
                else:
                    settling = newest.get((name, customer, start), 0.0) > now - grace
                result.rows.append(
                    Row(
                        customer=customer,
                        event_name=name,
                        meter=str(ours[name]["id"]),
                        start=start,
                        end=min(start + step, until),
                        spool=sides[0].get(start, Decimal(0)),
                        stripe=sides[1].get(start, Decimal(0)),
                        events=0,
                        settling=settling,
                    )
                )
    return result
