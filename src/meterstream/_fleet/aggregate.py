"""The relays' aggregation (``meterstream relay --aggregate``): which uses aggregate, into what.

Pure functions and records: :class:`AggregateRules` says which event names aggregate
(sum meters) and into which group a use goes (event name, payload apart
from the value, window); :func:`aggregate_records` turns a batch of uses into
aggregate records, each a group's aggregated events and its source identifiers. How
the fleet agrees on them once is :mod:`meterstream._fleet.aggregate_log`.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from meterstream._aggregate.arithmetic import (
    Number,
    add_exact,
    dimensions_key,
    exact_number,
    split_value,
    window_start,
)
from meterstream._record.checks import format_value
from meterstream._record.events import format_timestamp

__all__ = ["AggregateRules", "Unit", "aggregate_records", "record_identifier"]


@dataclass
class Unit:
    """What one send settles: events for Stripe, and the messages they stand for."""

    events: list[dict[str, Any]]
    msgs: list[Any]
    #: True when *events* are aggregated events (an aggregate record's).
    aggregated: bool = False


@dataclass
class AggregateRules:
    """Which event names aggregate, with their meter's value key, and the window."""

    value_keys: dict[str, str]
    window: int
    #: Names asked for but not aggregated, with the reason (their meter does not sum).
    refused: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_meters(
        cls, names: Iterable[str], window: int, meters: Optional[Sequence[Mapping[str, Any]]]
    ) -> AggregateRules:
        """Rules for *names* given Stripe's meters (None: they could not be read)."""
        from meterstream._aggregate.meters import unaggregatable_names

        names = sorted(names)
        if meters is None:
            return cls({name: "value" for name in names}, window)
        refused = unaggregatable_names(meters, names)
        keys: dict[str, str] = {}
        for meter in meters:
            name = meter.get("event_name")
            if name in names and name not in refused and meter.get("status", "active") == "active":
                settings = meter.get("value_settings") or {}
                key = settings.get("event_payload_key") if isinstance(settings, Mapping) else None
                keys[str(name)] = key if isinstance(key, str) and key else "value"
        return cls(keys, window, refused)

    def group_of(self, event: Mapping[str, Any]) -> Optional[tuple[tuple[Any, ...], Number]]:
        """(the aggregate group's key, the use's value), or None for an event not aggregated."""
        name = event["event_name"]
        value_key = self.value_keys.get(name)
        if value_key is None:
            return None
        payload: Mapping[str, str] = event["payload"]
        raw = payload.get(value_key)
        if raw is None:
            return None
        number = exact_number(raw)
        if number is None:
            return None
        try:
            seconds = _parse_timestamp(event["timestamp"])
        except (ValueError, OverflowError):  # no such date: Stripe will say so
            return None
        others = dimensions_key({k: v for k, v in payload.items() if k != value_key}) or ()
        return (name, value_key, others, window_start(seconds, self.window)), number


def _parse_timestamp(text: str) -> float:
    """Seconds of a checked wire timestamp (``2024-06-01T12:00:00.000Z``)."""
    whole = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    fraction = text[20:-1] if len(text) > 20 else ""
    return whole + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def record_identifier(sources: Iterable[str]) -> str:
    """An aggregated group's identifier: a hash of its sorted source identifiers."""
    material = "\n".join(sorted(sources)).encode("utf-8", "surrogatepass")
    return "msf_" + hashlib.blake2b(material, digest_size=16).hexdigest()


#: Sources in one aggregate record: up to ~100 bytes each, so a record stays far
#: below NATS's default 1 MB message limit whatever --aggregate-batch is.
MAX_SOURCES = 2000


@dataclass
class _Group:
    key: tuple[Any, ...]
    total: Optional[Number] = None
    sources: list[str] = field(default_factory=list)
    msgs: list[Any] = field(default_factory=list)
    upto: int = 0


def aggregate_records(
    items: list[tuple[Any, dict[str, Any]]], rules: AggregateRules, floor: int = 0
) -> list[tuple[str, bytes, list[Any], list[tuple[Any, dict[str, Any]]]]]:
    """Aggregate *items* (message, event) into aggregate records.

    Returns, per group: (its identifier, the record's bytes, its messages,
    its items). A repeated identifier within *items* is aggregated once; the
    repeat's message is settled with the group.
    """
    groups: dict[tuple[Any, ...], _Group] = {}
    full: list[_Group] = []
    by_ident: dict[str, _Group] = {}
    members: dict[int, list[tuple[Any, dict[str, Any]]]] = {}
    for msg, event in items:
        ident = event["identifier"]
        found = by_ident.get(ident)
        if found is None:
            grouped = rules.group_of(event)
            assert grouped is not None  # the caller passes aggregatable events only
            key, number = grouped
            found = groups.get(key)
            if found is not None and len(found.sources) >= MAX_SOURCES:
                full.append(found)  # one record stays well under NATS's 1 MB messages
                found = None
            if found is None:
                found = groups[key] = _Group(key)
            found.total = add_exact(found.total, number)
            found.sources.append(ident)
            by_ident[ident] = found
        found.msgs.append(msg)
        found.upto = max(found.upto, _stream_seq(msg))
        members.setdefault(id(found), []).append((msg, event))
    out = []
    for group in [*full, *groups.values()]:
        name, value_key, others, start = group.key
        rid = record_identifier(group.sources)
        assert group.total is not None
        events = []
        for split, part in enumerate(split_value(group.total)):
            payload = dict(others)
            payload[value_key] = format_value(part)
            events.append(
                {
                    "identifier": f"{rid}_{split}",
                    "event_name": name,
                    "timestamp": format_timestamp(start),
                    "payload": payload,
                }
            )
        body = {
            "events": events,
            "sources": sorted(group.sources),
            "upto": group.upto,
            "floor": floor,
        }
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")
        out.append((rid, data, group.msgs, members[id(group)]))
    return out


def _stream_seq(msg: Any) -> int:
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:
        return 0
