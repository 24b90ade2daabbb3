"""The emulator's in-memory Stripe: sessions, events, meters, faults.

Pure Python, no I/O: every method can be called from a test without a
server, and time comes from an injectable clock. One lock guards the data
because the server's event loop writes while a test thread reads.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections.abc import Iterable
from itertools import repeat
from typing import (
    Any,
    Callable,
    Optional,
)

from meterstream.emulator import _overview
from meterstream.emulator._errors import StripeError, bad_request
from meterstream.emulator._faults import FaultConfig, FaultInjector
from meterstream.emulator._ingest import DEDUPE_WINDOW, parse_batch
from meterstream.emulator._meter_registry import MeterRegistry
from meterstream.emulator._meters import (
    list_object,
    parse_summary_query,
    summarize,
)
from meterstream.emulator._metronome_state import MetronomeState
from meterstream.emulator._records import (
    CUSTOMER,
    ERROR,
    ID,
    NAME,
    RECEIVED,
    TS,
    VALUE,
    MeterKeys,
    Store,
)
from meterstream.emulator._reports import Reports
from meterstream.emulator._sessions import Sessions
from meterstream.emulator._validate import (
    format_rfc3339,
    validate_adjustment_body,
)
from meterstream.emulator._webhooks import WebhookSender

__all__ = ["DEDUPE_WINDOW", "EmulatorState", "Total"]

#: Stream batches indexed per hold of the lock by a validation pass.
_VALIDATE_CHUNK = 20


@dataclasses.dataclass(frozen=True)
class Total:
    """What one customer used of one event name: sum of values, number of events."""

    sum: float
    count: int


class EmulatorState:
    """Everything the emulator knows, readable directly from tests.

    Args:
        clock: wall-clock function returning Unix seconds (``time.time``);
            inject one to test expiry and dedupe windows without waiting.
        session_ttl: lifetime of meter event session tokens, in seconds.
        api_keys: the secret keys accepted; None accepts any key starting
            ``sk_test_`` or ``rk_test_``.
        auto_create_meters: an event for an unknown event name creates a sum
            meter for it (else it is reported as a ``no_meter`` error).
        faults: the initial fault settings (``reset()`` returns to them).
        seed: seed of the random choices of fractional faults.
        check_timestamp_range: answer 400 for timestamps outside 35 days past
            / 5 minutes future; False reports them as asynchronous errors.
    """

    def __init__(
        self,
        *,
        clock: Optional[Callable[[], float]] = None,
        session_ttl: float = 900.0,
        api_keys: Optional[Iterable[str]] = None,
        auto_create_meters: bool = False,
        faults: Optional[FaultConfig] = None,
        seed: Optional[int] = None,
        check_timestamp_range: bool = True,
    ) -> None:
        if session_ttl <= 0:
            raise ValueError(f"session_ttl must be > 0, got {session_ttl!r}")
        self.clock: Callable[[], float] = clock or time.time
        self.session_ttl = float(session_ttl)
        self.api_keys: Optional[set[str]] = set(api_keys) if api_keys is not None else None
        self.auto_create_meters = auto_create_meters
        self.check_timestamp_range = check_timestamp_range
        self.injector = FaultInjector(faults, clock=self.clock, seed=seed)
        self._lock = threading.RLock()
        self._prefix = secrets.token_hex(4)
        self._serial = 0
        #: Kept by reset(), so that a running client keeps working.
        self._sessions = Sessions()
        #: The Metronome side: same clock, reset with the rest.
        self.metronome = MetronomeState(lambda: self.clock())
        self._clear()
        self.webhooks = WebhookSender(self)
        #: The page's extra sections: name -> a function returning a JSON-able
        #: object, shown under ``sections[name]`` of ``GET /_emulator/overview``
        #: (the Metronome side fills ``"metronome"``; see docs/emulator.md).
        self.page_sections: dict[str, Callable[[], Any]] = {
            "metronome": self.metronome.page_section
        }

    def _clear(self) -> None:
        # Emptied, not replaced: a process that froze these containers out of
        # the garbage collector's scans (the CLI does) keeps that benefit.
        self._seen: dict[str, float] = getattr(self, "_seen", {})
        self._seen.clear()
        self._store: Store = getattr(self, "_store", None) or Store()
        self._store.clear()
        self._meters = MeterRegistry(lambda: self._next_id("mtr"))
        self._requests: dict[str, dict[str, int]] = {}
        self._stored = 0
        self._duplicates = 0
        self._sessions.created = 0
        self._reports = Reports(lambda: self._next_id("evt"))

    def _next_id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}_emu{self._prefix}{self._serial:08d}"

    # -- auth and sessions -------------------------------------------------

    def check_api_key(self, key: str) -> bool:
        """Whether *key* may open sessions.

        Args:
            key: the bearer token of a request.

        Returns:
            True when *key* is an accepted secret key.
        """
        if self.api_keys is not None:
            return key in self.api_keys
        return key.startswith(("sk_test_", "rk_test_"))

    def create_session(self) -> dict[str, Any]:
        """Open a session.

        Returns:
            A new ``v2.billing.meter_event_session`` object.
        """
        now = self.clock()
        with self._lock:
            token, expires = self._sessions.open(now, self.session_ttl)
            session_id = self._next_id("mes")
        return {
            "id": session_id,
            "object": "v2.billing.meter_event_session",
            "authentication_token": token,
            "created": format_rfc3339(now),
            "expires_at": format_rfc3339(expires),
            "livemode": False,
        }

    def session_valid(self, token: str) -> bool:
        """Whether *token* may post to the stream.

        Args:
            token: the bearer token of a stream request.

        Returns:
            True when *token* is a session token that has not expired.
        """
        return self._sessions.valid(token, self.clock())

    # -- the stream --------------------------------------------------------

    def ingest(self, body: object) -> tuple[int, int]:
        """Validate and store a decoded stream body, all or nothing.

        The request path only checks, dedupes and appends the batch's columns;
        records, totals, series and asynchronous errors are built when
        something reads them (``Store.index``).

        Args:
            body: the decoded JSON body, ``{"events": [...]}``.

        Returns:
            ``(stored, duplicates)``.

        Raises:
            StripeError: a 400 naming the first bad field; nothing is stored.
        """
        now = self.clock()
        with self._lock:
            idents, names, payloads, stamps, dups = parse_batch(
                body,
                now,
                self._seen,
                check_range=self.check_timestamp_range,
                new_id=self._event_id,
            )
            # Meters are matched on arrival, as Stripe does.
            keys: dict[str, Optional[MeterKeys]] = {}
            for name in set(names):
                found = self._meters.keys(name)
                if found is None and self.auto_create_meters:
                    found = self._meters.auto(name, now)
                keys[name] = found
            if idents:
                self._seen.update(zip(idents, repeat(now)))
                # Tuples of strings and floats drop out of the garbage
                # collector's scans once it has seen them; lists never do.
                self._store.batches.append(
                    (now, tuple(idents), tuple(names), tuple(payloads), tuple(stamps), keys)
                )
                self._stored += len(idents)
            self._duplicates += dups
        return len(idents), dups

    def _event_id(self) -> str:
        return self._next_id("emu")

    # -- meters ------------------------------------------------------------

    def create_meter(self, params: dict[str, str]) -> dict[str, Any]:
        """Create a ``billing.meter`` (``POST /v1/billing/meters``).

        Args:
            params: the v1 form parameters (``event_name``, ``display_name``,
                ``default_aggregation[formula]``, ...).

        Returns:
            The new meter object.

        Raises:
            StripeError: a 400 for a bad parameter or a duplicate event name.
        """
        with self._lock:
            return dict(self._meters.create(params, self.clock()))

    def meters(self) -> list[dict[str, Any]]:
        """Every meter.

        Returns:
            Copies of the meter objects, newest first (as Stripe lists them).
        """
        with self._lock:
            return self._meters.all()

    def deactivate_meter(self, meter_id: str) -> dict[str, Any]:
        """Deactivate a meter (``POST /v1/billing/meters/{id}/deactivate``).

        Args:
            meter_id: the meter's id (``mtr_...``).

        Returns:
            A copy of the meter object, its ``status`` now ``inactive``.

        Raises:
            StripeError: a 404 for an unknown id.
        """
        with self._lock:
            return self._meters.deactivate(meter_id, self.clock())

    def get_meter(self, meter_id: str) -> dict[str, Any]:
        """One meter (``GET /v1/billing/meters/{id}``).

        Args:
            meter_id: the meter's id (``mtr_...``).

        Returns:
            A copy of the meter object.

        Raises:
            StripeError: a 404 for an unknown id.
        """
        with self._lock:
            return self._meters.get(meter_id)

    def list_meters(self, params: dict[str, str]) -> dict[str, Any]:
        """``GET /v1/billing/meters``.

        Args:
            params: the query (``limit`` 1..100, ``status``).

        Returns:
            A v1 list object of meters, newest first.

        Raises:
            StripeError: a 400 for a bad ``limit``.
        """
        return MeterRegistry.page(self.meters(), params)

    def event_summaries(self, meter_id: str, params: dict[str, str]) -> dict[str, Any]:
        """``GET /v1/billing/meters/{id}/event_summaries``.

        Args:
            meter_id: the meter's id.
            params: the query (``customer``, ``start_time``, ``end_time``,
                ``value_grouping_window``, ``limit``, ``starting_after``).

        Returns:
            A v1 list object of ``billing.meter_event_summary`` objects.

        Raises:
            StripeError: a 404 for an unknown meter, a 400 for a bad query.
        """
        meter = self.get_meter(meter_id)
        query = parse_summary_query(params)
        with self._lock:
            self._index()
            records = self._store.series.get((meter["event_name"], query.customer), [])
            cancelled = self._store.cancelled
            points = [(r[TS], r[RECEIVED], r[VALUE]) for r in records if r[ID] not in cancelled]
        items = summarize(meter, points, query)
        url = f"/v1/billing/meters/{meter_id}/event_summaries"
        return list_object(items, url, query.limit, query.starting_after)

    # -- adjustments ---------------------------------------------------------

    def cancel_event(self, body: object) -> dict[str, Any]:
        """``POST /v2/billing/meter_event_adjustments`` (type ``cancel``).

        Args:
            body: the decoded JSON body.

        Returns:
            The ``v2.billing.meter_event_adjustment`` object.

        Raises:
            StripeError: a 400 for a bad body, an unknown identifier or one
                received more than 24 hours ago.
        """
        name, ident = validate_adjustment_body(body)
        now = self.clock()
        lag = self.injector.config.adjustment_lag
        with self._lock:
            self._store.cancel(name, ident, now, lag)
            adj_id = self._next_id("mtradj")
        return {
            "id": adj_id,
            "object": "v2.billing.meter_event_adjustment",
            "cancel": {"identifier": ident},
            "created": format_rfc3339(now),
            "event_name": name,
            "livemode": False,
            "status": "pending",
            "type": "cancel",
        }

    def _index(self) -> None:
        """Bring the store up to date before a read: pending batches indexed,
        lagging adjustments applied once due (caller holds the lock)."""
        self._store.index()
        self._store.apply_due(self.clock())

    # -- faults --------------------------------------------------------------

    @property
    def faults(self) -> FaultConfig:
        """A copy of the current fault settings."""
        return self.injector.config

    def update_faults(self, changes: dict[str, object]) -> FaultConfig:
        """Change some faults (the admin API's form).

        Args:
            changes: fault names and their new values.

        Returns:
            The faults now in force.

        Raises:
            StripeError: a 400 for an unknown fault or a bad value.
        """
        return self.injector.update(changes)

    def set_faults(self, **changes: Any) -> FaultConfig:
        """Change some faults (``fail_500=0.5, hang=True``...).

        Args:
            **changes: :class:`FaultConfig` fields and their new values.

        Returns:
            The faults now in force.

        Raises:
            ValueError: an unknown fault or a bad value.
        """
        try:
            return self.injector.update(changes)
        except StripeError as exc:
            raise ValueError(exc.message) from None

    def add_fault_listener(self, listener: Callable[[FaultConfig], None]) -> None:
        """Call ``listener(faults)`` after every change (from any thread).

        Args:
            listener: called with the new :class:`FaultConfig`.
        """
        self.injector.listeners.append(listener)

    # -- reading -------------------------------------------------------------

    def count_request(self, endpoint: str, status: int) -> None:
        """Count one answered request (read back in :attr:`requests`).

        Args:
            endpoint: the endpoint's name.
            status: the HTTP status answered.
        """
        with self._lock:
            by_status = self._requests.setdefault(endpoint, {})
            key = str(status)
            by_status[key] = by_status.get(key, 0) + 1

    @property
    def requests(self) -> dict[str, dict[str, int]]:
        """Requests answered, by endpoint then HTTP status (as a string)."""
        with self._lock:
            return {k: dict(v) for k, v in self._requests.items()}

    @property
    def duplicates(self) -> int:
        """Events accepted but not stored because their identifier was seen."""
        return self._duplicates

    @property
    def sessions_created(self) -> int:
        """Sessions opened since the start (or the last reset)."""
        return self._sessions.created

    @property
    def validation_errors(self) -> list[dict[str, Any]]:
        """Asynchronous errors (``code``, ``message``, ``identifier``, ``event_name``)."""
        with self._lock:
            self._index()
            return [dict(e) for e in self._store.errors]

    @property
    def event_count(self) -> int:
        """Events stored (duplicates excluded, errored and cancelled included)."""
        return self._stored

    def totals(self) -> dict[tuple[str, str], Total]:
        """What each customer used of each meter.

        Returns:
            ``{(event_name, customer): Total(sum, count)}`` of valid,
            uncancelled events.
        """
        with self._lock:
            self._index()
            return {k: Total(v[0], int(v[1])) for k, v in self._store.totals.items() if v[1]}

    def total(self, event_name: str, customer: str) -> Total:
        """What *customer* used of *event_name*.

        Args:
            event_name: the meter's event name.
            customer: the Stripe customer id.

        Returns:
            ``Total(sum, count)`` of valid, uncancelled events; zeros for none.
        """
        with self._lock:
            self._index()
            v = self._store.totals.get((event_name, customer))
            return Total(v[0], int(v[1])) if v else Total(0.0, 0)

    def events(
        self, event_name: Optional[str] = None, customer: Optional[str] = None
    ) -> list[dict[str, Any]]:
        """Stored events in arrival order.

        Args:
            event_name: only this event name.
            customer: only this customer.

        Returns:
            Dicts with the event's fields, as stored.
        """
        with self._lock:
            self._index()
            records = list(self._store.events)
            payloads = list(self._store.payloads)
            cancelled = set(self._store.cancelled)
        return [
            {
                "identifier": r[ID],
                "event_name": r[NAME],
                "payload": dict(payload),
                "timestamp": format_rfc3339(r[TS]),
                "received_at": format_rfc3339(r[RECEIVED]),
                "customer": r[CUSTOMER],
                "value": r[VALUE],
                "error": r[ERROR],
                "cancelled": r[ID] in cancelled,
            }
            for r, payload in zip(records, payloads)
            if (event_name is None or r[NAME] == event_name)
            and (customer is None or r[CUSTOMER] == customer)
        ]

    def overview(
        self,
        *,
        after: int = 0,
        limit: int = 50,
        hours: int = 24,
        customer: Optional[str] = None,
    ) -> dict[str, Any]:
        """What the page at ``/`` shows (``GET /_emulator/overview``), from running
        aggregates: its cost does not grow with the events stored.

        Args:
            after: the ``events.cursor`` of the previous answer (0 at first).
            limit: most events listed (1.._overview.MAX_EVENTS).
            hours: hours the chart covers (1.._overview.MAX_HOURS).
            customer: only the totals of customers whose id contains this.

        Returns:
            ``now``, ``counters``, ``meters`` (with ``hourly``), ``totals``,
            ``events`` (``cursor``, ``reset``, ``data`` newest first),
            ``errors``, ``reports``, ``webhooks``, ``requests``, ``refused``
            and ``sections``.
        """
        limit = max(1, min(limit, _overview.MAX_EVENTS))
        hours = max(1, min(hours, _overview.MAX_HOURS))
        self.validate()  # indexes what arrived (a little at a time) and reports errors
        webhooks = self.webhooks.recent(20)  # its own lock, never taken inside ours
        refused = self.injector.refusals()
        sections = {name: provide() for name, provide in list(self.page_sections.items())}
        with self._lock:
            self._index()
            now = self.clock()
            out = _overview.build(
                self._store, self._meters.all(), now=now, hours=hours, customer=customer
            )
            out["events"] = _overview.recent_events(self._store, after, limit)
            reports = self._reports.events
            out["reports"] = {
                "count": len(reports),
                "recent": [_report_row(e) for e in reversed(reports[-20:])],
            }
            out["counters"] = {
                "events_stored": self._stored,
                "duplicates": self._duplicates,
                "cancelled": len(self._store.cancelled),
                "invalid": len(self._store.errors),
                "sessions_created": self._sessions.created,
                "sessions_active": self._sessions.active(now),
                "meters": len(self._meters),
            }
            out["requests"] = {k: dict(v) for k, v in self._requests.items()}
        out["now"] = now
        out["webhooks"] = webhooks
        out["refused"] = refused
        out["sections"] = sections
        return out

    def snapshot(self) -> dict[str, Any]:
        """The whole state, as the admin API shows it.

        Returns:
            Everything ``GET /_emulator/state`` answers.
        """
        totals = self.totals()
        webhooks = self.webhooks.snapshot()  # its own lock, never taken inside ours
        with self._lock:
            now = self.clock()
            return {
                "events_stored": self._stored,
                "duplicates": self._duplicates,
                "cancelled": len(self._store.cancelled),
                "sessions_created": self._sessions.created,
                "sessions_active": self._sessions.active(now),
                "meters": len(self._meters),
                "totals": [
                    {"event_name": k[0], "customer": k[1], "sum": t.sum, "count": t.count}
                    for k, t in totals.items()
                ],
                "requests": {k: dict(v) for k, v in self._requests.items()},
                "validation_errors": [dict(e) for e in self._store.errors],
                "webhooks": webhooks,
                "faults": self.injector.config.to_dict(),
            }

    def reset(self) -> None:
        """Forget events, meters, counters, errors and reports; faults and webhook
        endpoints back to their start values.

        Session tokens stay valid so a running client keeps working.
        """
        with self._lock:
            self._clear()
        self.metronome.reset()
        self.injector.reset()
        self.webhooks.reset()

    # -- asynchronous validation and its events ------------------------------

    @property
    def known_customers(self) -> Optional[set[str]]:
        """None: every customer exists; a set: events for others are reported
        ``meter_event_customer_not_found``."""
        return self._store.customers

    @known_customers.setter
    def known_customers(self, customers: Optional[Iterable[str]]) -> None:
        with self._lock:
            self._store.customers = set(customers) if customers is not None else None

    def validate(self) -> list[dict[str, Any]]:
        """Run Stripe's asynchronous validation over what arrived since the last run.

        Returns:
            The new ``v2.core.event`` objects (full, with ``data``): one
            ``v1.billing.meter.no_meter_found`` for events with no meter, one
            ``v1.billing.meter.error_report_triggered`` per meter with errors.
        """
        # The batches waiting now are indexed a few at a time, letting the
        # stream's requests take the lock in between: one pass over a
        # second of full load holds it for milliseconds, not a third of a second.
        with self._lock:
            waiting = len(self._store.batches)
        while waiting > 0:
            with self._lock:
                self._store.index(_VALIDATE_CHUNK)
            waiting -= _VALIDATE_CHUNK
        with self._lock:
            self._index()
            meter_ids = self._meters.ids_by_event_name()
            return self._reports.collect(self._store.errors, meter_ids, self.clock())

    def reported_since(self, start: int) -> list[dict[str, Any]]:
        """The generated report events from position *start* on.

        Args:
            start: how many were already seen.

        Returns:
            The ``v2.core.event`` objects, oldest first.
        """
        with self._lock:
            return self._reports.events[start:]

    @property
    def reported_count(self) -> int:
        """How many events the validation has generated since the last reset."""
        return len(self._reports.events)

    def core_event(self, event_id: str) -> dict[str, Any]:
        """``GET /v2/core/events/{id}``.

        Args:
            event_id: the event's id (``evt_...``).

        Returns:
            The full event, with ``data``.

        Raises:
            StripeError: a 404 for an unknown id.
        """
        self.validate()
        with self._lock:
            event = self._reports.by_id.get(event_id)
        if event is None:
            raise StripeError(
                404,
                "invalid_request_error",
                f"No such event: '{event_id}'",
                code="resource_missing",
            )
        return event

    def core_events(self, params: dict[str, str]) -> dict[str, Any]:
        """``GET /v2/core/events``.

        Args:
            params: the query (``limit`` 1..100, ``page``).

        Returns:
            A v2 list object of events, newest first.

        Raises:
            StripeError: a 400 for a bad ``limit`` or ``page``.
        """
        raw = params.get("limit") or "20"
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 100):
            raise bad_request("limit: must be between 1 and 100", param="limit")
        self.validate()
        with self._lock:
            return self._reports.page(int(raw), params.get("page"))


def _report_row(event: dict[str, Any]) -> dict[str, Any]:
    """One error report as the page lists it."""
    related = event.get("related_object")
    return {
        "id": event["id"],
        "type": event["type"],
        "created": event["created"],
        "meter": related["id"] if related else None,
        "error_count": event["data"]["reason"]["error_count"],
        "summary": event["data"]["developer_message_summary"],
    }
