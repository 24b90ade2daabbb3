"""A fault-injecting stand-in for Stripe's two Meter Event Streams endpoints.

Written from scratch (not :mod:`meterstream.emulator`) on raw sockets, so each
test controls the bytes: answer normally, reset the connection, close a
keep-alive connection, answer late, truncate a body, send garbage, odd status
codes and headers, strange sessions, or trickle bytes forever.

Each request is answered by the next scripted :class:`Action` for its endpoint
(``"session"`` or ``"stream"``), or the endpoint's default once the script is
used up. Every request is recorded, and stream events are stored once per
identifier, the way Stripe dedupes over 24 hours.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

SESSION_PATH = "/v2/billing/meter_event_session"
STREAM_PATH = "/v2/billing/meter_event_stream"
ENDPOINTS = {SESSION_PATH: "session", STREAM_PATH: "stream"}
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def http_date(when: datetime) -> str:
    return when.strftime("%a, %d %b %Y %H:%M:%S GMT")


@dataclass
class Action:
    """How to answer one request.

    kind:
      ``ok``        the normal answer (a session, or store the events and ``{}``);
      ``status``    answer *status* with *body* and *headers* (events stored if *store*);
      ``reset``     read the request (store its events if *store*), then reset the connection;
      ``close``     answer normally, then close the keep-alive connection without saying so;
      ``slow``      store the events if *store*, wait *delay* seconds, then answer normally;
      ``truncated`` a 200 whose body stops short of its Content-Length, then close;
      ``hang``      read the request and never answer (until the server stops);
      ``drip``      send a 200's headers, then one body byte every *delay* seconds, forever;
      ``session``   a 200 session with these *token*, *created* and *expires_at* values
                    (JSON values, so a test can send numbers or nulls).
    """

    kind: str = "ok"
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    store: bool = False
    delay: float = 0.0
    token: Any = None
    created: Any = None
    expires_at: Any = None


def ok() -> Action:
    return Action("ok")


def status(
    code: int, body: bytes = b"{}", headers: Optional[dict[str, str]] = None, store: bool = False
) -> Action:
    return Action("status", status=code, body=body, headers=dict(headers or {}), store=store)


@dataclass
class Request:
    endpoint: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection: int
    action: str
    events: Optional[list[dict[str, Any]]] = None
    #: time.monotonic() when the request was read in full.
    at: float = 0.0

    @property
    def authorization(self) -> str:
        return self.headers.get("authorization", "")

    @property
    def idempotency_key(self) -> Optional[str]:
        return self.headers.get("idempotency-key")

    @property
    def identifiers(self) -> tuple[str, ...]:
        return tuple(event.get("identifier", "") for event in self.events or [])


class _Closed(Exception):
    """The peer went away (or the server is stopping)."""


class HostileServer:
    """A threaded HTTP/1.1 server on 127.0.0.1; use as a context manager."""

    def __init__(self, secret_key: str) -> None:
        self.secret_key = secret_key
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Action]] = {"session": deque(), "stream": deque()}
        self.defaults: dict[str, Action] = {"session": ok(), "stream": ok()}
        self.requests: list[Request] = []
        #: identifier -> the event, stored once (Stripe's 24-hour dedupe).
        self.stored: dict[str, dict[str, Any]] = {}
        self.duplicates = 0
        self.tokens: set[str] = set()
        self.revoked: set[str] = set()
        self._token_numbers = 0
        self._connections = 0
        self._stop = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._acceptor = threading.Thread(target=self._accept_loop, name="hostile-accept")

    # -- scripting --------------------------------------------------------------------

    def script(self, endpoint: str, *actions: Action) -> None:
        """Answer the next requests to *endpoint* (``session``/``stream``) with *actions*."""
        with self._lock:
            self._scripts[endpoint].extend(actions)

    def set_default(self, endpoint: str, action: Action) -> None:
        with self._lock:
            self.defaults[endpoint] = action

    def _next_action(self, endpoint: str) -> Action:
        with self._lock:
            script = self._scripts[endpoint]
            return script.popleft() if script else self.defaults[endpoint]

    def scripted_left(self, endpoint: str) -> int:
        with self._lock:
            return len(self._scripts[endpoint])

    def revoke_all_tokens(self) -> None:
        with self._lock:
            self.revoked |= self.tokens

    # -- what happened ------------------------------------------------------------------

    def requests_to(self, endpoint: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    def stored_identifiers(self) -> set[str]:
        with self._lock:
            return set(self.stored)

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> HostileServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._acceptor.join(5)
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in list(self._threads):
            thread.join(5)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            with self._lock:
                self._connections += 1
                number = self._connections
                self._sockets.add(sock)
            thread = threading.Thread(
                target=self._serve, args=(sock, number), name=f"hostile-conn-{number}"
            )
            thread.daemon = True
            self._threads.append(thread)
            thread.start()

    # -- one connection -------------------------------------------------------------------

    def _serve(self, sock: socket.socket, number: int) -> None:
        sock.settimeout(0.05)
        buffer = bytearray()
        try:
            while not self._stop.is_set():
                try:
                    request = self._read_request(sock, buffer, number)
                except _Closed:
                    return
                if not self._answer(sock, request):
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._sockets.discard(sock)
            sock.close()

    def _recv(self, sock: socket.socket, buffer: bytearray) -> None:
        while True:
            if self._stop.is_set():
                raise _Closed
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise _Closed
            buffer += chunk
            return

    def _read_request(self, sock: socket.socket, buffer: bytearray, number: int) -> Request:
        while b"\r\n\r\n" not in buffer:
            self._recv(sock, buffer)
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        _method, path, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        buffer[:] = rest
        while len(buffer) < length:
            self._recv(sock, buffer)
        body = bytes(buffer[:length])
        del buffer[:length]
        endpoint = ENDPOINTS.get(path.split("?")[0], "other")
        events = None
        if endpoint == "stream":
            try:
                events = json.loads(body)["events"]
            except (ValueError, KeyError, TypeError):
                events = None
        return Request(endpoint, path, headers, body, number, "", events, time.monotonic())

    def _answer(self, sock: socket.socket, request: Request) -> bool:
        """Answer *request*; False when the connection is to be dropped."""
        if request.endpoint == "other":
            request.action = "404"
            self._record(request)
            self._send(sock, 404, b'{"error": {"code": "not_found", "message": "no"}}')
            return True
        action = self._next_action(request.endpoint)
        request.action = action.kind
        self._record(request)
        kind = action.kind
        if kind == "reset":
            if action.store:
                self._store(request)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if kind == "hang":
            self._stop.wait()
            return False
        if kind == "drip":
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000000\r\n\r\n"
            )
            while not self._stop.wait(action.delay):
                sock.sendall(b" ")
            return False
        if kind == "slow":
            if request.endpoint == "stream":
                # Accepted (and stored) at once; the answer comes late.
                self._store(request)
                if self._stop.wait(action.delay):
                    return False
                self._send(sock, 200, b"{}")
                return True
            if self._stop.wait(action.delay):
                return False
            kind = "ok"
        if kind == "truncated":
            if action.store:
                self._store(request)
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"authentication'
            )
            return False
        if kind == "status":
            if action.store:
                self._store(request)
            self._send(sock, action.status, action.body, action.headers)
            return True
        if request.endpoint == "session":
            self._answer_session(sock, request, action)
        else:
            self._answer_stream(sock, request, action)
        return kind != "close"

    def _answer_session(self, sock: socket.socket, request: Request, action: Action) -> None:
        if request.authorization != f"Bearer {self.secret_key}":
            self._send(sock, 401, b'{"error": {"type": "invalid_request_error", "code": "x"}}')
            return
        now = datetime.now(timezone.utc)
        with self._lock:
            self._token_numbers += 1
            token = f"tok_hostile_{self._token_numbers}"
        if action.kind == "session" and action.token is not None:
            token = action.token
        if isinstance(token, str):
            with self._lock:
                self.tokens.add(token)
        body = {
            "id": "mes_hostile",
            "object": "v2.billing.meter_event_session",
            "authentication_token": token,
            "created": rfc3339(now),
            "expires_at": rfc3339(now + timedelta(minutes=15)),
            "livemode": False,
        }
        if action.kind == "session":
            if action.created is not None:
                body["created"] = action.created
            if action.expires_at is not None:
                body["expires_at"] = action.expires_at
        self._send(sock, 200, json.dumps(body).encode())

    def _answer_stream(self, sock: socket.socket, request: Request, action: Action) -> None:
        auth = request.authorization
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        with self._lock:
            valid = token in self.tokens and token not in self.revoked
        if not valid:
            body = {
                "error": {
                    "type": "temporary_session_expired",
                    "code": "billing_meter_event_session_expired",
                    "message": "expired",
                }
            }
            self._send(sock, 401, json.dumps(body).encode())
            return
        if request.events is None:
            self._send(sock, 400, b'{"error": {"code": "parameter_missing", "message": "x"}}')
            return
        self._store(request)
        self._send(sock, 200, b"{}")

    # -- helpers ------------------------------------------------------------------------

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _store(self, request: Request) -> None:
        with self._lock:
            for event in request.events or []:
                identifier = str(event.get("identifier"))
                if identifier in self.stored:
                    self.duplicates += 1
                else:
                    self.stored[identifier] = event

    def _send(
        self,
        sock: socket.socket,
        code: int,
        body: bytes,
        headers: Optional[dict[str, str]] = None,
    ) -> None:
        lines = [f"HTTP/1.1 {code} {REASONS.get(code, 'Status')}"]
        extra = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        extra.update(headers or {})
        lines += [f"{name}: {value}" for name, value in extra.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
