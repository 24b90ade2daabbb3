"""The emulator's in-memory Metronome: customers, billable metrics, usage events.

Pure Python, no I/O, readable from tests as ``EmulatorState.metronome``.
Events are deduplicated by ``transaction_id`` over 34 days (a repeat is
answered 200 and counted in ``duplicates``); an event whose ``customer_id``
is neither a customer's id nor one of its ingest aliases is kept, unmatched,
as Metronome keeps it. Usage is computed when read.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable
from typing import Any, Callable, Optional

from meterstream.emulator._metronome_checks import (
    PAST_WINDOW,
    MetronomeError,
    bad,
    validate_ingest,
)
from meterstream.emulator._metronome_metrics import check_metric, matches
from meterstream.emulator._metronome_usage import UsageQueries, iso

__all__ = ["DEDUPE_WINDOW", "MetronomeState"]

#: "subsequent events within the next 34 days with the same ID are ... ignored"
DEDUPE_WINDOW = 34 * 86400.0


def _not_found(what: str, ident: str) -> MetronomeError:
    return MetronomeError(404, f"{what} not found: {ident}")


class MetronomeState(UsageQueries):
    """Everything the emulator's Metronome knows.

    Args:
        clock: Unix seconds; the emulator's own clock, so a test's fake
            clock moves both sides.
        tokens: the bearer tokens accepted; None accepts any.
    """

    def __init__(self, clock: Callable[[], float], tokens: Optional[Iterable[str]] = None) -> None:
        self.clock = clock
        self.tokens: Optional[set[str]] = set(tokens) if tokens is not None else None
        self._lock = threading.RLock()
        self._prefix = secrets.token_hex(4)
        self.reset()

    def reset(self) -> None:
        """Forget customers, metrics, events and counters."""
        with getattr(self, "_lock", threading.RLock()):
            self._serial = 0
            self.customers: dict[str, dict[str, Any]] = {}
            self.metrics: dict[str, dict[str, Any]] = {}
            self._events: list[dict[str, Any]] = []
            self._by_transaction: dict[str, dict[str, Any]] = {}
            self.duplicates = 0
            self.ingest_requests = 0
            #: Events stored per event type, kept as they arrive: the page's
            #: section reads it without scanning the events.
            self._per_type: dict[str, int] = {}

    def _uuid(self) -> str:
        self._serial += 1
        tail = f"{self._serial:012x}"
        return f"{self._prefix}-0000-4000-8000-{tail}"

    def check_token(self, token: Optional[str]) -> bool:
        if not token:
            return False
        return self.tokens is None or token in self.tokens

    # -- ingest ------------------------------------------------------------------

    def ingest(self, body: bytes) -> tuple[int, int]:
        """Validate and store an ingest body, all or nothing: ``(stored, duplicates)``."""
        now = self.clock()
        events = validate_ingest(body, now)
        stored = dups = 0
        with self._lock:
            self.ingest_requests += 1
            for event, stamp in events:
                ident = event["transaction_id"]
                seen = self._by_transaction.get(ident)
                if seen is not None and seen["received"] > now - DEDUPE_WINDOW:
                    dups += 1
                    continue
                record = {
                    "id": self._uuid(),
                    "transaction_id": ident,
                    "customer_id": event["customer_id"],
                    "event_type": event["event_type"],
                    "timestamp": event["timestamp"],
                    "ts": stamp,
                    "properties": dict(event["properties"]),
                    "received": now,
                }
                self._by_transaction[ident] = record
                self._events.append(record)
                self._per_type[record["event_type"]] = (
                    self._per_type.get(record["event_type"], 0) + 1
                )
                stored += 1
            self.duplicates += dups
        return stored, dups

    def events(self) -> list[dict[str, Any]]:
        """Every stored event (copies), in the order received."""
        with self._lock:
            return [self._public_event(e) for e in self._events]

    def transaction_ids(self) -> set[str]:
        with self._lock:
            return set(self._by_transaction)

    def _public_event(self, record: dict[str, Any]) -> dict[str, Any]:
        out = {k: record[k] for k in ("id", "transaction_id", "customer_id", "event_type")}
        out["timestamp"] = iso(record["ts"])
        out["properties"] = dict(record["properties"])
        out["processed_at"] = iso(record["received"])
        out["is_duplicate"] = False
        customer = self._customer_of(record["customer_id"])
        if customer is not None:
            out["matched_customer"] = {"id": customer["id"], "name": customer["name"]}
        out["matched_billable_metrics"] = [
            {"id": m["id"], "name": m["name"]}
            for m in self._live_metrics()
            if matches(m, record["event_type"], record["properties"])
        ]
        return out

    def search(self, body: Any) -> list[dict[str, Any]]:
        if not isinstance(body, dict) or not isinstance(body.get("transactionIds"), list):
            raise bad("transactionIds: is required, an array of strings")
        now = self.clock()
        with self._lock:
            found = []
            for ident in body["transactionIds"]:
                record = self._by_transaction.get(ident) if isinstance(ident, str) else None
                if record is not None and record["received"] > now - PAST_WINDOW:
                    found.append(self._public_event(record))
            return found

    # -- customers ---------------------------------------------------------------

    def _customer_of(self, ident: str) -> Optional[dict[str, Any]]:
        customer = self.customers.get(ident)
        if customer is not None:
            return customer
        for customer in self.customers.values():
            if ident in customer["ingest_aliases"] and customer.get("archived_at") is None:
                return customer
        return None

    def _check_aliases(self, aliases: Any, owner: Optional[str]) -> list[str]:
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
            raise bad("ingest_aliases: must be an array of non-empty strings")
        for alias in aliases:
            for other in self.customers.values():
                if other["id"] != owner and alias in other["ingest_aliases"]:
                    raise MetronomeError(409, f"ingest alias {alias!r} is already in use")
        return list(dict.fromkeys(aliases))

    def create_customer(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad("body: must be a JSON object")
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise bad("name: is required")
        with self._lock:
            aliases = self._check_aliases(body.get("ingest_aliases", []), None)
            ident = self._uuid()
            now = iso(self.clock())
            customer = {
                "id": ident,
                "name": name[:160],
                "external_id": body.get("external_id") or (aliases[0] if aliases else ident),
                "ingest_aliases": aliases,
                "custom_fields": dict(body.get("custom_fields") or {}),
                "customer_config": {},
                "created_at": now,
                "updated_at": now,
                "archived_at": None,
            }
            self.customers[ident] = customer
            return {k: customer[k] for k in ("id", "name", "external_id", "ingest_aliases")}

    def customer(self, ident: str) -> dict[str, Any]:
        with self._lock:
            customer = self.customers.get(ident)
            if customer is None:
                raise _not_found("customer", ident)
            return {**customer, "ingest_aliases": list(customer["ingest_aliases"])}

    def list_customers(self, query: dict[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            wanted = set(query["customer_ids"].split(",")) if query.get("customer_ids") else None
            alias = query.get("ingest_alias")
            out = []
            for customer in self.customers.values():
                if wanted is not None and customer["id"] not in wanted:
                    continue
                if alias and alias not in customer["ingest_aliases"]:
                    continue
                if customer["archived_at"] is not None and query.get("only_archived") != "true":
                    continue
                out.append(self.customer(customer["id"]))
            return out

    def set_ingest_aliases(self, ident: str, body: Any) -> None:
        if not isinstance(body, dict) or "ingest_aliases" not in body:
            raise bad("ingest_aliases: is required")
        with self._lock:
            customer = self.customers.get(ident)
            if customer is None:
                raise _not_found("customer", ident)
            customer["ingest_aliases"] = self._check_aliases(body["ingest_aliases"], ident)
            customer["updated_at"] = iso(self.clock())

    def archive_customer(self, body: Any) -> dict[str, Any]:
        ident = body.get("id") if isinstance(body, dict) else None
        with self._lock:
            if not isinstance(ident, str) or ident not in self.customers:
                raise _not_found("customer", str(ident))
            self.customers[ident]["archived_at"] = iso(self.clock())
            return {"id": ident}

    # -- billable metrics ------------------------------------------------------

    def create_metric(self, body: Any) -> dict[str, Any]:
        metric = check_metric(body)
        with self._lock:
            metric["id"] = self._uuid()
            metric["archived_at"] = None
            self.metrics[metric["id"]] = metric
            return {"id": metric["id"]}

    def metric(self, ident: str) -> dict[str, Any]:
        with self._lock:
            metric = self.metrics.get(ident)
            if metric is None:
                raise _not_found("billable metric", ident)
            return dict(metric)

    def list_metrics(self, query: dict[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            every = query.get("include_archived") == "true"
            return [dict(m) for m in self.metrics.values() if every or m["archived_at"] is None]

    def archive_metric(self, body: Any) -> dict[str, Any]:
        ident = body.get("id") if isinstance(body, dict) else None
        with self._lock:
            if not isinstance(ident, str) or ident not in self.metrics:
                raise _not_found("billable metric", str(ident))
            self.metrics[ident]["archived_at"] = iso(self.clock())
            return {"id": ident}

    def page_section(self) -> dict[str, Any]:
        """The Metronome side on the emulator's page (``sections["metronome"]``).

        Its billable metrics, and the events stored per event type; counted
        as events arrive, so it costs the same with a million of them.
        """
        with self._lock:
            metrics = [
                {
                    "name": m["name"],
                    "aggregation": m["aggregation_type"]
                    + (f"({m['aggregation_key']})" if m.get("aggregation_key") else ""),
                    "event types": ", ".join(m.get("event_type_filter", {}).get("in_values", []))
                    or "any",
                    "group keys": ", ".join(", ".join(g) for g in m.get("group_keys") or []),
                }
                for m in self._live_metrics()
            ]
            return {
                "title": "Metronome",
                "summary": (
                    f"{len(self._events)} events stored, {self.duplicates} duplicates ignored, "
                    f"{len(self.customers)} customers, {len(metrics)} billable metrics"
                ),
                "billable_metrics": metrics,
                "events_by_type": [
                    {"event type": name, "events": count}
                    for name, count in sorted(self._per_type.items())
                ],
            }

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "events_stored": len(self._events),
                "duplicates": self.duplicates,
                "ingest_requests": self.ingest_requests,
                "customers": len(self.customers),
                "billable_metrics": len(self.metrics),
            }
