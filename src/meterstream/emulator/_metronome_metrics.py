"""Billable metrics: which events they match, and how they aggregate.

A metric matches an event when its ``event_type_filter`` allows the event
type and every one of its ``property_filters`` passes (``exists``,
``in_values``, ``not_in_values``); it aggregates the matching events with
``COUNT``, ``SUM``, ``MAX``, ``UNIQUE`` (distinct values) or ``LATEST``
over its ``aggregation_key`` property, in exact decimals.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from typing import Any, Optional

from meterstream.emulator._metronome_checks import bad

__all__ = ["AGGREGATIONS", "aggregate", "check_metric", "matches"]

AGGREGATIONS = ("COUNT", "SUM", "MAX", "UNIQUE", "LATEST")
_FILTER_KEYS = {"name", "exists", "in_values", "not_in_values"}
_CREATE_KEYS = {
    "name",
    "aggregation_key",
    "aggregation_type",
    "custom_fields",
    "event_type_filter",
    "group_keys",
    "property_filters",
    "sql",
}


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise bad(f"{where}: must be a non-empty array of strings")
    return list(value)


def check_metric(body: Any) -> dict[str, Any]:
    """The metric a ``POST /v1/billable-metrics/create`` body describes; a 400 otherwise."""
    if not isinstance(body, dict):
        raise bad("body: must be a JSON object")
    for key in body:
        if key not in _CREATE_KEYS:
            raise bad(f"{key}: unknown field")
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise bad("name: is required")
    if body.get("sql") is not None:
        raise bad("sql: SQL billable metrics are not emulated")
    kind = body.get("aggregation_type")
    if not isinstance(kind, str) or kind.upper() not in AGGREGATIONS:
        raise bad(f"aggregation_type: must be one of {', '.join(AGGREGATIONS)}")
    kind = kind.upper()
    key = body.get("aggregation_key")
    if kind != "COUNT" and (not isinstance(key, str) or not key):
        raise bad(f"aggregation_key: is required with aggregation_type {kind}")
    metric: dict[str, Any] = {"name": name, "aggregation_type": kind}
    if key is not None:
        metric["aggregation_key"] = key
    types = body.get("event_type_filter")
    if types is not None:
        if not isinstance(types, dict) or not set(types) <= {"in_values", "not_in_values"}:
            raise bad("event_type_filter: must be {in_values?, not_in_values?}")
        metric["event_type_filter"] = {
            k: _strings(v, f"event_type_filter.{k}") for k, v in types.items()
        }
    filters = body.get("property_filters")
    if filters is not None:
        if not isinstance(filters, list):
            raise bad("property_filters: must be an array")
        checked = []
        for i, rule in enumerate(filters):
            if not isinstance(rule, dict) or not set(rule) <= _FILTER_KEYS:
                raise bad(f"property_filters[{i}]: must be {{name, exists?, in_values?, ...}}")
            if not isinstance(rule.get("name"), str) or not rule["name"]:
                raise bad(f"property_filters[{i}].name: is required")
            if "exists" in rule and not isinstance(rule["exists"], bool):
                raise bad(f"property_filters[{i}].exists: must be a boolean")
            for k in ("in_values", "not_in_values"):
                if k in rule:
                    _strings(rule[k], f"property_filters[{i}].{k}")
            checked.append(dict(rule))
        metric["property_filters"] = checked
    groups = body.get("group_keys")
    if groups is not None:
        if not isinstance(groups, list):
            raise bad("group_keys: must be an array of arrays of strings")
        metric["group_keys"] = [_strings(g, f"group_keys[{i}]") for i, g in enumerate(groups)]
    if isinstance(body.get("custom_fields"), dict):
        metric["custom_fields"] = dict(body["custom_fields"])
    return metric


def matches(metric: dict[str, Any], event_type: str, properties: dict[str, Any]) -> bool:
    """Whether *metric* counts an event of *event_type* with *properties*."""
    types = metric.get("event_type_filter")
    if types:
        if "in_values" in types and event_type not in types["in_values"]:
            return False
        if "not_in_values" in types and event_type in types["not_in_values"]:
            return False
    for rule in metric.get("property_filters") or ():
        present = rule["name"] in properties
        if "exists" in rule and rule["exists"] != present:
            return False
        value = properties.get(rule["name"])
        text = value if isinstance(value, str) else str(value)
        if "in_values" in rule and (not present or text not in rule["in_values"]):
            return False
        if "not_in_values" in rule and present and text in rule["not_in_values"]:
            return False
    return True


def _number(value: Any) -> Optional[decimal.Decimal]:
    if isinstance(value, bool):
        return None
    try:
        number = decimal.Decimal(str(value))
    except decimal.InvalidOperation:
        return None
    return number if number.is_finite() else None


def aggregate(metric: dict[str, Any], events: Iterable[tuple[float, dict[str, Any]]]) -> Any:
    """The value of *metric* over ``(timestamp, properties)`` pairs: a number or None.

    COUNT and SUM of nothing are 0; MAX and LATEST of nothing are None; a
    property that is not a number is left out of SUM and MAX.
    """
    kind = metric["aggregation_type"]
    key: str = metric.get("aggregation_key") or ""
    if kind == "COUNT":
        return sum(1 for _ in events)
    if kind == "UNIQUE":
        return len({str(p[key]) for _, p in events if key in p})
    if kind == "LATEST":
        latest = max(((t, p) for t, p in events if key in p), key=lambda e: e[0], default=None)
        return None if latest is None else _as_json(_number(latest[1][key]))
    numbers = [n for n in (_number(p.get(key)) for _, p in events) if n is not None]
    if kind == "SUM":
        return _as_json(sum(numbers, decimal.Decimal(0)))
    return _as_json(max(numbers)) if numbers else None


def _as_json(number: Optional[decimal.Decimal]) -> Any:
    if number is None:
        return None
    return int(number) if number == number.to_integral_value() else float(number)
