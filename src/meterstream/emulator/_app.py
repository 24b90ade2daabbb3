"""The raw ASGI application: routing, body parsing, Stripe's error shapes.

No framework: a dict lookup routes the hot path (the meter event stream) and
the answer to a good batch is a constant ``{}``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import urllib.parse
from collections.abc import Awaitable, Sequence
from typing import Callable, Optional

from meterstream.emulator._errors import StripeError, bad_request, v1_error_body, v2_error_body
from meterstream.emulator._events_api import route as events_route
from meterstream.emulator._faults import ADJUSTMENTS, SESSION, STREAM, FaultConfig
from meterstream.emulator._http import (
    NO_KEY,
    Answer,
    Disconnected,
    Headers,
    Receive,
    Scope,
    Send,
    credential,
    form,
    json_body,
    masked,
)
from meterstream.emulator._metronome_api import route as metronome_route
from meterstream.emulator._page import route as page_route
from meterstream.emulator._state import EmulatorState

__all__ = ["EmulatorApp", "create_app"]

logger = logging.getLogger("meterstream.emulator")

SESSION_PATH = "/v2/billing/meter_event_session"
STREAM_PATH = "/v2/billing/meter_event_stream"
ADJUSTMENTS_PATH = "/v2/billing/meter_event_adjustments"
METERS_PATH = "/v1/billing/meters"
DEFAULT_MAX_BODY = 1 << 20
_EMPTY: Headers = []


class EmulatorApp:
    """The ASGI 3 application; ``state`` is the :class:`EmulatorState` it serves.

    Args:
        state: the state to serve (a fresh one when None).
        max_body_bytes: larger bodies are answered 413.
        refuse_hook: called with a number of seconds when the admin API asks
            to refuse connections; only a server handle can do that.
    """

    def __init__(
        self,
        state: Optional[EmulatorState] = None,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        refuse_hook: Optional[Callable[[float], None]] = None,
    ) -> None:
        self.state = state if state is not None else EmulatorState()
        self.max_body_bytes = max_body_bytes
        self.refuse_hook = refuse_hook
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._hang: Optional[asyncio.Event] = None
        self._closing = False
        self._ids = itertools.count(1)
        self.state.add_fault_listener(self._on_faults)

    # -- hang ----------------------------------------------------------------

    def _on_faults(self, config: FaultConfig) -> None:
        if not config.hang:
            self.release_hung()

    def release_hung(self, *, closing: bool = False) -> None:
        """Answer every hung request (from any thread); ``closing`` also stops new hangs."""
        if closing:
            self._closing = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._release_in_loop)
        except RuntimeError:  # the loop closed in between
            pass

    def _release_in_loop(self) -> None:
        event, self._hang = self._hang, None
        if event is not None:
            event.set()

    async def _apply_delays(self, faults: FaultConfig) -> None:
        while faults.hang and not self._closing:
            event = self._hang
            if event is None:
                self._loop = asyncio.get_running_loop()
                event = self._hang = asyncio.Event()
            await event.wait()
            faults = self.state.injector.live
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000.0)

    # -- ASGI ----------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._loop = asyncio.get_running_loop()
                self._hang = None
                self._closing = False
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.release_hung(closing=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_body_bytes:
                    raise StripeError(
                        413,
                        "invalid_request_error",
                        f"body: larger than {self.max_body_bytes} bytes",
                        code="request_too_large",
                    )
                break
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        body: bytes = message.get("body", b"")
        if not message.get("more_body"):
            return body
        chunks = [body]
        size = len(body)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise StripeError(
                    413,
                    "invalid_request_error",
                    f"body: larger than {self.max_body_bytes} bytes",
                    code="request_too_large",
                )
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        v1 = path.startswith("/v1/")
        endpoint = "unknown"
        allow = b""
        after: Optional[Callable[[], None]] = None
        try:
            endpoint, allowed, handler = self._route(path)
            if method not in allowed:
                allow = ", ".join(allowed).encode()
                raise StripeError(
                    405,
                    "invalid_request_error",
                    f"Method {method} is not allowed for {path}; use {', '.join(allowed)}.",
                    code="method_not_allowed",
                )
            status, body, headers = await handler(scope, receive)
            if endpoint == "admin.faults" and self._pending_refuse is not None:
                seconds, self._pending_refuse = self._pending_refuse, None
                hook = self.refuse_hook
                if hook is not None:
                    after = lambda: hook(seconds)  # noqa: E731
        except Disconnected:
            return
        except StripeError as exc:
            status = exc.status
            body = exc.v1_body() if v1 else exc.v2_body()
            headers = [(b"allow", allow)] if status == 405 else _EMPTY
        except Exception:
            logger.exception("internal error on %s %s", method, path)
            status, headers = 500, _EMPTY
            message = "An unexpected error occurred in the emulator."
            body = (
                v1_error_body("api_error", message)
                if v1
                else v2_error_body("api_error", "internal_error", message)
            )
        out = [
            (b"content-length", str(len(body)).encode()),
            (b"request-id", b"req_emu_%d" % next(self._ids)),
        ]
        if headers:
            out.extend(headers)
        # Every answer is JSON but the page's own files, which say what they are.
        if not headers or headers[0][0] != b"content-type":
            out.insert(0, (b"content-type", b"application/json"))
        # Counted before answering, so a client that reads the state right
        # after its response sees its own request.
        self.state.count_request(endpoint, status)
        await send({"type": "http.response.start", "status": status, "headers": out})
        trickle = self.state.injector.live.session_trickle_ms if endpoint == SESSION else 0.0
        if trickle and body:
            # A byte at a time: a server (or proxy) answering as slowly as it can.
            for i in range(len(body)):
                await asyncio.sleep(trickle / 1000.0)
                await send(
                    {"type": "http.response.body", "body": body[i : i + 1], "more_body": True}
                )
            body = b""
        await send({"type": "http.response.body", "body": body})
        if after is not None:
            after()

    _pending_refuse: Optional[float] = None

    def _route(
        self, path: str
    ) -> tuple[str, Sequence[str], Callable[[Scope, Receive], Awaitable[Answer]]]:
        if path == STREAM_PATH:
            return STREAM, ("POST",), self._stream
        if path == SESSION_PATH:
            return SESSION, ("POST",), self._session
        if path == ADJUSTMENTS_PATH:
            return ADJUSTMENTS, ("POST",), self._adjustment
        if path == METERS_PATH:
            return "meters", ("GET", "POST"), self._meters
        if path.startswith(METERS_PATH + "/"):
            rest = path[len(METERS_PATH) + 1 :].split("/")
            if len(rest) == 1 and rest[0]:
                return "meters.retrieve", ("GET",), self._meter
            if len(rest) == 2 and rest[0] and rest[1] == "event_summaries":
                return "meters.event_summaries", ("GET",), self._summaries
            if len(rest) == 2 and rest[0] and rest[1] == "deactivate":
                return "meters.deactivate", ("POST",), self._deactivate
        found = events_route(self, path) or metronome_route(self, path) or page_route(self, path)
        if found is not None:
            return found
        admin = _ADMIN.get(path)
        if admin is not None:
            name, methods = admin
            return f"admin.{name}", methods, getattr(self, f"_admin_{name}")
        text = f"Unrecognized request URL ({path})."
        raise StripeError(404, "invalid_request_error", text, code="not_found")

    # -- Stripe endpoints ----------------------------------------------------

    def _secret_key(self, scope: Scope, v1: bool) -> None:
        key = credential(scope)
        if key and self.state.check_api_key(key):
            return
        message = NO_KEY if not key else f"Invalid API Key provided: {masked(key)}"
        code = None if v1 else "invalid_api_key"
        raise StripeError(401, "invalid_request_error", message, code=code)

    async def _faulted(self, endpoint: str) -> Optional[Answer]:
        faults = self.state.injector.live
        if not faults.active or not faults.applies_to("stripe"):
            return None
        if endpoint == SESSION and not faults.apply_to_sessions:
            return None
        await self._apply_delays(faults)
        injected = self.state.injector.decide(endpoint)
        if injected is None:
            return None
        body = v2_error_body(injected.type, injected.code, injected.message)
        return injected.status, body, injected.headers

    async def _stream(self, scope: Scope, receive: Receive) -> Answer:
        body = await self._read(scope, receive)
        faulted = await self._faulted(STREAM)
        if faulted is not None:
            return faulted
        token = credential(scope)
        state = self.state
        if not token:
            raise StripeError(401, "invalid_request_error", NO_KEY, code="invalid_api_key")
        if not state.session_valid(token):
            raise StripeError(
                401,
                "temporary_session_expired",
                "The meter event session has expired or is unknown. Create a new session.",
                code="billing_meter_event_session_expired",
            )
        parsed = json_body(body)
        refused = state.injector.refused_event(parsed)
        if refused is not None:
            raise refused
        state.ingest(parsed)
        return 200, b"{}", _EMPTY

    async def _session(self, scope: Scope, receive: Receive) -> Answer:
        await self._read(scope, receive)
        faulted = await self._faulted(SESSION)
        if faulted is not None:
            return faulted
        self._secret_key(scope, v1=False)
        session = self.state.create_session()
        pad = self.state.injector.live.session_pad_bytes
        if pad:
            session["padding"] = "x" * pad  # an oversized answer
        return 200, json.dumps(session).encode(), _EMPTY

    async def _adjustment(self, scope: Scope, receive: Receive) -> Answer:
        body = await self._read(scope, receive)
        faulted = await self._faulted(ADJUSTMENTS)
        if faulted is not None:
            return faulted
        self._secret_key(scope, v1=False)
        return 200, json.dumps(self.state.cancel_event(json_body(body))).encode(), _EMPTY

    async def _meters(self, scope: Scope, receive: Receive) -> Answer:
        body = await self._read(scope, receive)
        self._secret_key(scope, v1=True)
        if scope["method"] == "POST":
            result = self.state.create_meter(form(body))
        else:
            result = self.state.list_meters(form(scope["query_string"]))
        return 200, json.dumps(result).encode(), _EMPTY

    async def _meter(self, scope: Scope, receive: Receive) -> Answer:
        await self._read(scope, receive)
        self._secret_key(scope, v1=True)
        meter_id = urllib.parse.unquote(scope["path"].rsplit("/", 1)[1])
        return 200, json.dumps(self.state.get_meter(meter_id)).encode(), _EMPTY

    async def _deactivate(self, scope: Scope, receive: Receive) -> Answer:
        await self._read(scope, receive)
        self._secret_key(scope, v1=True)
        meter_id = urllib.parse.unquote(scope["path"].split("/")[4])
        return 200, json.dumps(self.state.deactivate_meter(meter_id)).encode(), _EMPTY

    async def _summaries(self, scope: Scope, receive: Receive) -> Answer:
        await self._read(scope, receive)
        self._secret_key(scope, v1=True)
        meter_id = urllib.parse.unquote(scope["path"].split("/")[4])
        result = self.state.event_summaries(meter_id, form(scope["query_string"]))
        return 200, json.dumps(result).encode(), _EMPTY

    # -- admin ---------------------------------------------------------------

    async def _admin_state(self, scope: Scope, receive: Receive) -> Answer:
        await self._read(scope, receive)
        return 200, json.dumps(self.state.snapshot()).encode(), _EMPTY

    async def _admin_events(self, scope: Scope, receive: Receive) -> Answer:
        await self._read(scope, receive)
        query = form(scope["query_string"])
        events = self.state.events(query.get("event_name"), query.get("customer"))
        return 200, json.dumps({"data": events, "count": len(events)}).encode(), _EMPTY

    async def _admin_faults(self, scope: Scope, receive: Receive) -> Answer:
        body = await self._read(scope, receive)
        if scope["method"] == "GET":
            return 200, json.dumps(self.state.faults.to_dict()).encode(), _EMPTY
        changes = json_body(body)
        if type(changes) is not dict:
            raise bad_request("body: must be a JSON object of fault changes")
        refuse = changes.pop("refuse_connections", None)
        seconds = changes.pop("refuse_seconds", None)
        if refuse is not None:
            if type(refuse) is not bool:
                raise bad_request("refuse_connections: must be bool", param="refuse_connections")
            if refuse:
                if self.refuse_hook is None:
                    raise bad_request(
                        "refuse_connections: only an emulator started by Emulator or the CLI "
                        "can stop listening",
                        param="refuse_connections",
                    )
                if (
                    isinstance(seconds, bool)
                    or not isinstance(seconds, (int, float))
                    or not 0 < seconds <= 3600
                ):
                    raise bad_request(
                        "refuse_seconds: required with refuse_connections over HTTP (0 < s <= "
                        "3600), since nothing could turn it off while the port is closed",
                        param="refuse_seconds",
                    )
        new = self.state.update_faults(changes)
        if refuse and isinstance(seconds, (int, float)):
            self._pending_refuse = float(seconds)
        return 200, json.dumps(new.to_dict()).encode(), _EMPTY

    async def _admin_reset(self, scope: Scope, receive: Receive) -> Answer:
        await self._read(scope, receive)
        self.state.reset()
        return 200, json.dumps({"reset": True}).encode(), _EMPTY

    async def _admin_health(self, scope: Scope, receive: Receive) -> Answer:
        await self._read(scope, receive)
        return 200, b'{"ok": true}', _EMPTY


_ADMIN: dict[str, tuple[str, tuple[str, ...]]] = {
    "/_emulator/state": ("state", ("GET",)),
    "/_emulator/events": ("events", ("GET",)),
    "/_emulator/faults": ("faults", ("GET", "POST")),
    "/_emulator/reset": ("reset", ("POST",)),
    "/_emulator/health": ("health", ("GET",)),
}


def create_app(
    state: Optional[EmulatorState] = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    refuse_hook: Optional[Callable[[float], None]] = None,
) -> EmulatorApp:
    """The emulator as an ASGI 3 application, to serve with any ASGI server.

    Args:
        state: the state to serve; a fresh :class:`EmulatorState` when None.
        max_body_bytes: bodies larger than this are answered 413.
        refuse_hook: what to call when the admin API asks to refuse connections.
    """
    return EmulatorApp(state, max_body_bytes=max_body_bytes, refuse_hook=refuse_hook)
