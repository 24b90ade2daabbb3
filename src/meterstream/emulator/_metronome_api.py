"""Routes of the emulator's Metronome, beside its Stripe on the one base URL.

``POST /v1/ingest``, customers (``/v1/customers``, ``.../{id}``,
``.../{id}/setIngestAliases``, ``.../archive``), billable metrics
(``/v1/billable-metrics``, ``.../create``, ``.../{id}``, ``.../archive``),
``POST /v1/usage``, ``POST /v1/usage/groups``, ``POST /v1/events/search``;
``GET /_emulator/metronome`` and ``GET /_emulator/metronome/events`` for
tests. Every answer that is not a 200 is Metronome's ``{"message": ...}``.
The ingest endpoint takes the emulator's faults as the Stripe stream does.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Awaitable, Sequence
from typing import Any, Callable, Optional, Protocol

from meterstream.emulator._errors import StripeError
from meterstream.emulator._faults import FaultConfig
from meterstream.emulator._http import Answer, Headers, Receive, Scope, credential, form
from meterstream.emulator._metronome_checks import MetronomeError, bad
from meterstream.emulator._state import EmulatorState

__all__ = ["INGEST", "route"]

INGEST = "metronome.ingest"
_NONE: Headers = []

Handler = Callable[[Scope, Receive], Awaitable[Answer]]


class EmulatorApp(Protocol):
    """What these endpoints use of the emulator's app (``_app.EmulatorApp``)."""

    state: EmulatorState

    async def _read(self, scope: Scope, receive: Receive) -> bytes: ...

    async def _apply_delays(self, faults: FaultConfig) -> None: ...


def _json(body: bytes) -> Any:
    if not body:
        return {}
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise bad("body: not valid JSON") from None


def _ok(data: Any) -> Answer:
    return 200, json.dumps(data).encode(), _NONE


def _page(items: list[dict[str, Any]], query: dict[str, str], limit: int = 100) -> Answer:
    cursor = query.get("next_page") or "0"
    start = int(cursor) if cursor.isdigit() else 0
    try:
        size = max(1, min(int(query.get("limit") or limit), limit))
    except ValueError:
        size = limit
    chunk = items[start : start + size]
    more = start + size < len(items)
    return _ok({"data": chunk, "next_page": str(start + size) if more else None})


def route(app: EmulatorApp, path: str) -> Optional[tuple[str, Sequence[str], Handler]]:
    """The endpoint name, methods and handler for *path*, or None when not Metronome's."""
    found = _route(path)
    if found is None:
        return None
    name, methods, handler = found

    async def serve(scope: Scope, receive: Receive) -> Answer:
        try:
            try:
                body = await app._read(scope, receive)
            except StripeError as exc:  # 413: the body is too large
                raise MetronomeError(exc.status, exc.message) from None
            if not name.startswith("admin."):
                if name == INGEST:
                    faulted = await _faulted(app)
                    if faulted is not None:
                        return faulted
                if not app.state.metronome.check_token(credential(scope)):
                    raise MetronomeError(401, "Unauthorized")
            return handler(app.state, scope, body)
        except MetronomeError as exc:
            return exc.status, exc.body(), _NONE

    return name, methods, serve


async def _faulted(app: EmulatorApp) -> Optional[Answer]:
    faults = app.state.injector.live
    if not faults.active or not faults.applies_to("metronome"):
        return None
    await app._apply_delays(faults)
    injected = app.state.injector.decide(INGEST)
    if injected is None:
        return None
    # Metronome's SDK reads x-should-retry, not Stripe's header.
    headers = [
        (b"x-should-retry", value) if name == b"stripe-should-retry" else (name, value)
        for name, value in injected.headers
    ]
    return injected.status, json.dumps({"message": injected.message}).encode(), headers


Serve = Callable[[EmulatorState, Scope, bytes], Answer]


def _route(path: str) -> Optional[tuple[str, Sequence[str], Serve]]:
    exact = _EXACT.get(path)
    if exact is not None:
        return exact
    for prefix, (name, methods, serve) in _PREFIXED.items():
        if path.startswith(prefix) and len(path) > len(prefix):
            return name, methods, serve
    return None


def _ident(scope: Scope, index: int) -> str:
    return urllib.parse.unquote(scope["path"].split("/")[index])


def _ingest(state: EmulatorState, scope: Scope, body: bytes) -> Answer:
    refused = state.injector.live.reject_identifier
    if refused is not None and state.injector.live.applies_to("metronome"):
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            parsed = None
        for i, event in enumerate(parsed if isinstance(parsed, list) else ()):
            if isinstance(event, dict) and event.get("transaction_id") == refused:
                raise bad(f"[{i}]: this event was refused (injected)")
    state.metronome.ingest(body)
    return 200, b"", _NONE


def _customers(state: EmulatorState, scope: Scope, body: bytes) -> Answer:
    if scope["method"] == "POST":
        return _ok({"data": state.metronome.create_customer(_json(body))})
    query = form(scope["query_string"])
    return _page(state.metronome.list_customers(query), query)


def _customer(state: EmulatorState, scope: Scope, body: bytes) -> Answer:
    parts = scope["path"].split("/")
    if len(parts) == 5 and parts[4] == "setIngestAliases" and scope["method"] == "POST":
        state.metronome.set_ingest_aliases(_ident(scope, 3), _json(body))
        return 200, b"", _NONE
    if len(parts) != 4 or scope["method"] != "GET":
        raise MetronomeError(404, f"not found: {scope['method']} {scope['path']}")
    return _ok({"data": state.metronome.customer(_ident(scope, 3))})


def _metrics(state: EmulatorState, scope: Scope, body: bytes) -> Answer:
    query = form(scope["query_string"])
    return _page(state.metronome.list_metrics(query), query)


def _metric(state: EmulatorState, scope: Scope, body: bytes) -> Answer:
    if len(scope["path"].split("/")) != 4:
        raise MetronomeError(404, f"not found: {scope['path']}")
    return _ok({"data": state.metronome.metric(_ident(scope, 3))})


def _usage(state: EmulatorState, scope: Scope, body: bytes) -> Answer:
    rows = state.metronome.usage(_json(body))
    return _page(rows, form(scope["query_string"]), limit=len(rows) or 1)


def _groups(state: EmulatorState, scope: Scope, body: bytes) -> Answer:
    query = form(scope["query_string"])
    return _page(state.metronome.usage_groups(_json(body)), query)


_EXACT: dict[str, tuple[str, Sequence[str], Serve]] = {
    "/v1/ingest": (INGEST, ("POST",), _ingest),
    "/v1/customers": ("metronome.customers", ("GET", "POST"), _customers),
    "/v1/customers/archive": (
        "metronome.customers.archive",
        ("POST",),
        lambda s, _, b: _ok({"data": s.metronome.archive_customer(_json(b))}),
    ),
    "/v1/billable-metrics": ("metronome.billable_metrics", ("GET",), _metrics),
    "/v1/billable-metrics/create": (
        "metronome.billable_metrics.create",
        ("POST",),
        lambda s, _, b: _ok({"data": s.metronome.create_metric(_json(b))}),
    ),
    "/v1/billable-metrics/archive": (
        "metronome.billable_metrics.archive",
        ("POST",),
        lambda s, _, b: _ok({"data": s.metronome.archive_metric(_json(b))}),
    ),
    "/v1/usage": ("metronome.usage", ("POST",), _usage),
    "/v1/usage/groups": ("metronome.usage.groups", ("POST",), _groups),
    "/v1/events/search": (
        "metronome.events.search",
        ("POST",),
        lambda s, _, b: _ok(s.metronome.search(_json(b))),
    ),
    "/_emulator/metronome": (
        "admin.metronome",
        ("GET",),
        lambda s, _, b: _ok(s.metronome.snapshot()),
    ),
    "/_emulator/metronome/events": (
        "admin.metronome.events",
        ("GET",),
        lambda s, _, b: _ok({"data": s.metronome.events()}),
    ),
}

_PREFIXED: dict[str, tuple[str, Sequence[str], Serve]] = {
    "/v1/customers/": ("metronome.customer", ("GET", "POST"), _customer),
    "/v1/billable-metrics/": ("metronome.billable_metric", ("GET",), _metric),
}
