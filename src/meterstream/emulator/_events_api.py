"""Routes for v2 core events and the webhook admin API.

``GET /v2/core/events`` and ``GET /v2/core/events/{id}`` (secret key) serve
the reports of the asynchronous validation, so a thin event delivered to a
webhook can be fetched in full, as stripe-python's ``fetch_event()`` does.
``GET /_emulator/webhooks`` lists endpoints and deliveries; ``POST`` adds an
endpoint (``{"url": ..., "secret": "whsec_..."}``), ``DELETE ?id=we_...``
removes one; ``POST /_emulator/validate`` runs a validation pass at once.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Awaitable, Sequence
from typing import Callable, Optional, Protocol

from meterstream.emulator._errors import StripeError, bad_request
from meterstream.emulator._http import Answer, Receive, Scope, form, json_body
from meterstream.emulator._state import EmulatorState

__all__ = ["EVENTS_PATH", "route"]


class EmulatorApp(Protocol):
    """What these endpoints use of the emulator's app (``_app.EmulatorApp``),
    named here so that this module does not import the one that routes to it."""

    state: EmulatorState

    async def _read(self, scope: Scope, receive: Receive) -> bytes: ...

    def _secret_key(self, scope: Scope, v1: bool) -> None: ...


EVENTS_PATH = "/v2/core/events"
_NONE: list[tuple[bytes, bytes]] = []

Handler = Callable[[Scope, Receive], Awaitable[Answer]]


def route(app: EmulatorApp, path: str) -> Optional[tuple[str, Sequence[str], Handler]]:
    """The endpoint name, methods and handler for *path*, or None when not ours."""
    if path == EVENTS_PATH:
        return "core.events", ("GET",), lambda s, r: _list(app, s, r)
    if path.startswith(EVENTS_PATH + "/"):
        rest = path[len(EVENTS_PATH) + 1 :]
        if rest and "/" not in rest:
            return "core.events.retrieve", ("GET",), lambda s, r: _retrieve(app, s, r)
    if path == "/_emulator/webhooks":
        return "admin.webhooks", ("GET", "POST", "DELETE"), lambda s, r: _webhooks(app, s, r)
    if path == "/_emulator/validate":
        return "admin.validate", ("POST",), lambda s, r: _validate(app, s, r)
    return None


async def _list(app: EmulatorApp, scope: Scope, receive: Receive) -> Answer:
    await app._read(scope, receive)
    app._secret_key(scope, v1=False)
    result = app.state.core_events(form(scope["query_string"]))
    return 200, json.dumps(result).encode(), _NONE


async def _retrieve(app: EmulatorApp, scope: Scope, receive: Receive) -> Answer:
    await app._read(scope, receive)
    app._secret_key(scope, v1=False)
    event_id = urllib.parse.unquote(scope["path"].rsplit("/", 1)[1])
    return 200, json.dumps(app.state.core_event(event_id)).encode(), _NONE


async def _webhooks(app: EmulatorApp, scope: Scope, receive: Receive) -> Answer:
    body = await app._read(scope, receive)
    sender = app.state.webhooks
    method = scope["method"]
    if method == "POST":
        spec = json_body(body)
        if type(spec) is not dict:
            raise bad_request("body: must be a JSON object with url and secret")
        for key in spec:
            if key not in ("url", "secret"):
                raise bad_request(f"{key}: unknown parameter", code="parameter_unknown")
        return 200, json.dumps(sender.add(spec.get("url"), spec.get("secret"))).encode(), _NONE
    if method == "DELETE":
        endpoint_id = form(scope["query_string"]).get("id", "")
        if not sender.remove(endpoint_id):
            raise StripeError(
                404,
                "invalid_request_error",
                f"No such webhook endpoint: '{endpoint_id}'",
                code="resource_missing",
            )
        return 200, json.dumps({"id": endpoint_id, "deleted": True}).encode(), _NONE
    return 200, json.dumps(sender.snapshot()).encode(), _NONE


async def _validate(app: EmulatorApp, scope: Scope, receive: Receive) -> Answer:
    await app._read(scope, receive)
    new = app.state.validate()
    app.state.webhooks.poke()
    return 200, json.dumps({"reported": [e["id"] for e in new]}).encode(), _NONE
