"""Stored events as records: what Stripe later decides about each one.

The stream's request path only appends a batch's columns. Reading anything
(totals, summaries, events, errors, a cancel) first turns pending batches
into one record per event here: the meter's customer and value keys are
applied, the value parsed, and the asynchronous validation error, if any,
decided, as Stripe does after it has answered 200.
"""

from __future__ import annotations

from typing import Any, Final, Optional

from meterstream.emulator._errors import StripeError, bad_request
from meterstream.emulator._ingest import DEDUPE_WINDOW
from meterstream.emulator._meters import DEFAULT_CUSTOMER_KEY, DEFAULT_VALUE_KEY, parse_value
from meterstream.emulator._validate import FUTURE_WINDOW, PAST_WINDOW

__all__ = [
    "CUSTOMER",
    "ERROR",
    "ID",
    "NAME",
    "RECEIVED",
    "TS",
    "VALUE",
    "Batch",
    "MeterKeys",
    "Record",
    "Store",
]

# A stored event: (identifier, event_name, timestamp, received, customer,
# value, error code). Tuples are the cheapest record Python has, and one
# holding only strings and numbers drops out of the garbage collector's
# sight after its first collection: the payload dicts (which json decodes
# untracked) live in a parallel list so the records stay that way. With
# millions of events stored, this halves the time a batch takes.
Record = tuple[str, str, float, float, Optional[str], Optional[float], Optional[str]]
ID: Final = 0
NAME: Final = 1
TS: Final = 2
RECEIVED: Final = 3
CUSTOMER: Final = 4
VALUE: Final = 5
ERROR: Final = 6

MeterKeys = tuple[str, str, str]  # customer key, value key, formula
# (received, identifiers, event names, payloads, timestamps, meter keys by name)
Batch = tuple[
    float,
    tuple[str, ...],
    tuple[str, ...],
    tuple[dict[str, str], ...],
    tuple[float, ...],
    dict[str, Optional[MeterKeys]],
]

_ERROR_MESSAGES = {
    "no_meter": "No active meter was found for event_name '{name}'.",
    "meter_event_no_customer_defined": "The payload has no customer under '{ckey}'.",
    "meter_event_invalid_value": "The value under '{vkey}' is missing or not a number.",
    "meter_event_value_too_many_digits": "The value under '{vkey}' has more than 15 digits.",
    "timestamp_too_far_in_past": "The timestamp is more than 35 days in the past.",
    "timestamp_in_future": "The timestamp is more than 5 minutes in the future.",
    "meter_event_customer_not_found": "No customer '{customer}' was found.",
}


def _error_entry(rec: Record, keys: Optional[tuple[str, str, str]]) -> dict[str, Any]:
    ckey, vkey = keys[:2] if keys else (DEFAULT_CUSTOMER_KEY, DEFAULT_VALUE_KEY)
    code = rec[ERROR] or ""
    return {
        "code": code,
        "message": _ERROR_MESSAGES[code].format(
            name=rec[NAME], ckey=ckey, vkey=vkey, customer=rec[CUSTOMER]
        ),
        "identifier": rec[ID],
        "event_name": rec[NAME],
        "received": rec[RECEIVED],
    }


# Numeric payload values seen before, so the common ones cost one dict lookup.
_NUMBERS: dict[str, float] = {}


def _parse_number(raw: str) -> Optional[float]:
    value = parse_value(raw)[0]
    if value is not None and len(_NUMBERS) < 65536:
        _NUMBERS[raw] = value
    return value


def async_error(
    keys: Optional[MeterKeys], customer: Optional[str], raw: Optional[str], ts: float, now: float
) -> str:
    """The code Stripe would report later for an event it accepted."""
    if keys is None:
        return "no_meter"
    if not customer:
        return "meter_event_no_customer_defined"
    if keys[2] != "count":
        value, code = parse_value(raw) if raw is not None else (None, None)
        if value is None:
            return code or "meter_event_invalid_value"
    if ts < now - PAST_WINDOW:
        return "timestamp_too_far_in_past"
    if ts > now + FUTURE_WINDOW:
        return "timestamp_in_future"
    return "meter_event_customer_not_found"


class Store:
    """Records, payloads, per-(event name, customer) series and totals, cancellations."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.events: list[Record] = []
        self.payloads: list[dict[str, str]] = []
        self.position: dict[str, int] = {}
        self.series: dict[tuple[str, str], list[Record]] = {}
        self.totals: dict[tuple[str, str], list[float]] = {}
        #: Per (event name, customer): hour (Unix seconds // 3600) -> [sum, count];
        #: kept as events are indexed so the page never scans the events.
        self.hourly: dict[tuple[str, str], dict[int, list[float]]] = {}
        #: Per (event name, customer) of a ``last`` meter: the latest record.
        self.latest: dict[tuple[str, str], Record] = {}
        self.errors: list[dict[str, Any]] = []
        self.error_counts: dict[str, int] = {}
        #: Identifiers of the events cancelled by an adjustment.
        self.cancelled: set[str] = set()
        #: Adjustments accepted, not applied yet (``adjustment_lag``):
        #: identifier -> when they apply.
        self.lagging: dict[str, float] = {}
        # None: every customer exists; a set: the only customers that do.
        self.customers: Optional[set[str]] = None

    def clear(self) -> None:
        # Emptied, not replaced: a process that froze these containers out of
        # the garbage collector's scans (the CLI does) keeps that benefit.
        for container in (
            self.batches,
            self.events,
            self.payloads,
            self.position,
            self.series,
            self.totals,
            self.hourly,
            self.latest,
            self.errors,
            self.error_counts,
            self.cancelled,
            self.lagging,
        ):
            container.clear()

    def index(self, limit: Optional[int] = None) -> None:
        """Turn pending batches (at most *limit* of them) into records, totals
        and series (caller holds the lock)."""
        if not self.batches:
            return
        batches = self.batches if limit is None else self.batches[:limit]
        events, payload_list, position = self.events, self.payloads, self.position
        series, totals, numbers = self.series, self.totals, _NUMBERS
        hourly, latest, error_counts = self.hourly, self.latest, self.error_counts
        customers = self.customers
        for received, idents, names, payloads, stamps, keys_by_name in batches:
            for i, ident in enumerate(idents):
                name, payload, ts = names[i], payloads[i], stamps[i]
                keys = keys_by_name[name]
                ckey, vkey, formula = keys or (DEFAULT_CUSTOMER_KEY, DEFAULT_VALUE_KEY, "sum")
                customer = payload.get(ckey)
                raw = payload.get(vkey)
                value = numbers.get(raw) if raw is not None else None
                if value is None and raw is not None:
                    value = _parse_number(raw)
                error: Optional[str] = None
                if (
                    keys is None
                    or not customer
                    or (value is None and formula != "count")
                    or not received - PAST_WINDOW <= ts <= received + FUTURE_WINDOW
                    or (customers is not None and customer not in customers)
                ):
                    error = async_error(keys, customer, raw, ts, received)
                rec: Record = (ident, name, ts, received, customer, value, error)
                position[ident] = len(events)
                events.append(rec)
                payload_list.append(payload)
                if error is not None:
                    self.errors.append(_error_entry(rec, keys))
                    error_counts[error] = error_counts.get(error, 0) + 1
                    continue
                key = (name, customer or "")
                found = series.get(key)
                if found is None:
                    found = series[key] = []
                    totals[key] = [0.0, 0]
                    hourly[key] = {}
                found.append(rec)
                total = totals[key]
                total[0] += value or 0.0
                total[1] += 1
                hours = hourly[key]
                hour = int(ts // 3600)
                bucket = hours.get(hour)
                if bucket is None:
                    bucket = hours[hour] = [0.0, 0]
                bucket[0] += value or 0.0
                bucket[1] += 1
                if formula == "last":
                    before = latest.get(key)
                    if before is None or (ts, received) >= (before[TS], before[RECEIVED]):
                        latest[key] = rec
        if limit is None:
            self.batches.clear()
        else:
            del self.batches[: len(batches)]

    def cancel(self, name: str, ident: str, now: float, lag: float = 0.0) -> None:
        """Cancel event *ident* of *name* (a meter event adjustment), at most once;
        with *lag*, the summaries leave it out only *lag* seconds after *now*
        (:meth:`apply_due`).

        Raises:
            StripeError: a 404 for an unknown identifier, a 400 for an event
                received 24 hours ago or more.
        """
        self.index()
        pos = self.position.get(ident)
        rec = self.events[pos] if pos is not None else None
        if rec is None or rec[NAME] != name:
            raise StripeError(
                404,
                "invalid_request_error",
                f"cancel.identifier: no meter event '{ident}' for event_name '{name}'",
                code="resource_missing",
                param="cancel.identifier",
            )
        if now - rec[RECEIVED] >= DEDUPE_WINDOW:
            raise bad_request(
                "cancel.identifier: events can only be cancelled within 24 hours of receipt",
                param="cancel.identifier",
            )
        if ident in self.cancelled or ident in self.lagging:
            return
        if lag > 0:
            self.lagging[ident] = now + lag
            return
        self._apply_cancel(rec)

    def apply_due(self, now: float) -> None:
        """Apply the lagging adjustments whose time has come (caller holds the lock)."""
        if not self.lagging:
            return
        for ident, due in list(self.lagging.items()):
            if due <= now:
                del self.lagging[ident]
                self._apply_cancel(self.events[self.position[ident]])

    def _apply_cancel(self, rec: Record) -> None:
        ident = rec[ID]
        if ident not in self.cancelled:
            self.cancelled.add(ident)
            if rec[ERROR] is None:
                key = (rec[NAME], rec[CUSTOMER] or "")
                total = self.totals[key]
                total[0] -= rec[VALUE] or 0.0
                total[1] -= 1
                bucket = self.hourly[key][int(rec[TS] // 3600)]
                bucket[0] -= rec[VALUE] or 0.0
                bucket[1] -= 1
                if self.latest.get(key) is rec:
                    self._forget_latest(key)

    def _forget_latest(self, key: tuple[str, str]) -> None:
        """The latest uncancelled record of *key* after its latest was cancelled
        (a scan of one customer's series, on a cancel only)."""
        best: Optional[Record] = None
        for rec in self.series.get(key, ()):
            if rec[ID] not in self.cancelled and (
                best is None or (rec[TS], rec[RECEIVED]) >= (best[TS], best[RECEIVED])
            ):
                best = rec
        if best is None:
            self.latest.pop(key, None)
        else:
            self.latest[key] = best
