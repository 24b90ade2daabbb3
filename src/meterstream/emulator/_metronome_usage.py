"""Reading usage back: ``POST /v1/usage`` and ``POST /v1/usage/groups``.

Aggregates are computed when read, over the events stored so far, per
customer (its id and every ingest alias), billable metric and window
(``HOUR``, ``DAY`` or ``NONE``, in UTC).
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any, Callable, Optional

from meterstream.emulator._metronome_checks import MetronomeError, bad, parse_time
from meterstream.emulator._metronome_metrics import aggregate, matches

__all__ = ["UsageQueries", "iso"]

_WINDOWS = {"HOUR": 3600.0, "DAY": 86400.0}


def iso(seconds: float) -> str:
    """RFC 3339, UTC, milliseconds: ``2025-01-01T00:00:00.000Z``."""
    when = dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{int(round(seconds * 1000)) % 1000:03d}Z"


def _not_found(what: str, ident: str) -> MetronomeError:
    return MetronomeError(404, f"{what} not found: {ident}")


class UsageQueries:
    """The usage reads of :class:`MetronomeState`, over its data and under its lock."""

    clock: Callable[[], float]
    customers: dict[str, dict[str, Any]]
    metrics: dict[str, dict[str, Any]]
    _events: list[dict[str, Any]]
    _lock: threading.RLock

    def _live_metrics(self) -> list[dict[str, Any]]:
        return [m for m in self.metrics.values() if m["archived_at"] is None]

    def _span(self, body: dict[str, Any], required: bool = True) -> tuple[float, float, str]:
        size = body.get("window_size")
        if not isinstance(size, str) or size.upper() not in ("HOUR", "DAY", "NONE"):
            raise bad("window_size: must be one of HOUR, DAY, NONE")
        if not required and "starting_on" not in body:
            return 0.0, self.clock() + 86400.0, size.upper()
        start = parse_time(body.get("starting_on"), "starting_on", naive_ok=True)
        end = parse_time(body.get("ending_before"), "ending_before", naive_ok=True)
        if required:
            if start % 86400 or end % 86400:
                raise bad("starting_on, ending_before: must be aligned to UTC midnight")
            if end < start + 86400:
                raise bad("ending_before: must be at least one day after starting_on")
        elif end <= start:
            raise bad("ending_before: must be after starting_on")
        return start, end, size.upper()

    def _windows(self, start: float, end: float, size: str) -> list[tuple[float, float]]:
        step = _WINDOWS.get(size)
        if step is None:
            return [(start, end)]
        out, at = [], start
        while at < end:
            out.append((at, min(at + step, end)))
            at += step
        return out

    def _matching(self, metric: dict[str, Any], customer: dict[str, Any]) -> list[dict[str, Any]]:
        names = {customer["id"], *customer["ingest_aliases"]}
        return [
            e
            for e in self._events
            if e["customer_id"] in names and matches(metric, e["event_type"], e["properties"])
        ]

    def usage(self, body: Any) -> list[dict[str, Any]]:
        """``POST /v1/usage``: one aggregate per customer, metric and window."""
        if not isinstance(body, dict):
            raise bad("body: must be a JSON object")
        start, end, size = self._span(body)
        with self._lock:
            ids = body.get("customer_ids")
            customers = [c for c in self.customers.values() if not ids or c["id"] in ids]
            wanted = body.get("billable_metrics")
            metrics: list[tuple[dict[str, Any], Optional[dict[str, Any]]]] = []
            if wanted:
                for item in wanted:
                    if not isinstance(item, dict) or item.get("id") not in self.metrics:
                        raise _not_found("billable metric", str(item))
                    metrics.append((self.metrics[item["id"]], item.get("group_by")))
            else:
                metrics = [(m, None) for m in self._live_metrics()]
            out: list[dict[str, Any]] = []
            for customer in customers:
                for metric, group_by in metrics:
                    events = self._matching(metric, customer)
                    for low, high in self._windows(start, end, size):
                        inside = [
                            (e["ts"], e["properties"]) for e in events if low <= e["ts"] < high
                        ]
                        row: dict[str, Any] = {
                            "customer_id": customer["id"],
                            "billable_metric_id": metric["id"],
                            "billable_metric_name": metric["name"],
                            "start_timestamp": iso(low),
                            "end_timestamp": iso(high),
                            "value": aggregate(metric, inside),
                        }
                        if group_by:
                            key = group_by.get("key")
                            values = {str(p[key]) for _, p in inside if key in p}
                            if group_by.get("values"):
                                values = set(group_by["values"])
                            row["groups"] = {
                                v: aggregate(metric, [e for e in inside if str(e[1].get(key)) == v])
                                for v in sorted(values)
                            }
                        out.append(row)
            return out

    def usage_groups(self, body: Any) -> list[dict[str, Any]]:
        """``POST /v1/usage/groups``: one customer and metric, by group key."""
        if not isinstance(body, dict):
            raise bad("body: must be a JSON object")
        metric = self.metrics.get(body.get("billable_metric_id"))  # type: ignore[arg-type]
        if metric is None:
            raise _not_found("billable metric", str(body.get("billable_metric_id")))
        customer = self.customers.get(body.get("customer_id"))  # type: ignore[arg-type]
        if customer is None:
            raise _not_found("customer", str(body.get("customer_id")))
        if body.get("group_key") is not None and body.get("group_by") is not None:
            raise bad("group_key, group_by: cannot be used together")
        keys: list[str] = []
        if isinstance(body.get("group_key"), list):
            keys = [str(k) for k in body["group_key"]]
        elif isinstance(body.get("group_by"), dict):
            keys = [str(body["group_by"].get("key"))]
        if (
            keys
            and keys not in (metric.get("group_keys") or [])
            and not all([k] in (metric.get("group_keys") or []) for k in keys)
        ):
            raise bad(f"group_key: {keys} is not a group key of the billable metric")
        filters = body.get("group_filters") or {}
        if isinstance(body.get("group_by"), dict) and body["group_by"].get("values"):
            filters = {keys[0]: body["group_by"]["values"]}
        start, end, size = self._span(body, required=False)
        with self._lock:
            events = self._matching(metric, customer)
            out: list[dict[str, Any]] = []
            for low, high in self._windows(start, end, size):
                inside = [e for e in events if low <= e["ts"] < high]
                groups: dict[tuple[Optional[str], ...], list[dict[str, Any]]] = {}
                for e in inside:
                    group = tuple(
                        None if k not in e["properties"] else str(e["properties"][k]) for k in keys
                    )
                    if any(
                        k in filters and value not in filters[k] for k, value in zip(keys, group)
                    ):
                        continue
                    groups.setdefault(group, []).append(e)
                for group, members in sorted(groups.items(), key=lambda g: str(g[0])):
                    row: dict[str, Any] = {
                        "starting_on": iso(low),
                        "ending_before": iso(high),
                        "value": aggregate(metric, [(e["ts"], e["properties"]) for e in members]),
                        "group": dict(zip(keys, group)) if keys else None,
                    }
                    if len(keys) == 1:
                        row["group_key"], row["group_value"] = keys[0], group[0]
                    out.append(row)
            return out
