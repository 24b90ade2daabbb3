"""The page at the emulator's root: three static files and the JSON they poll.

``GET /`` is ``page/index.html``; ``/_emulator/page/page.js`` and
``page.css`` are its script and style, shipped in the package (no build
step, nothing fetched from elsewhere). The script polls ``GET
/_emulator/overview?after=CURSOR`` about once a second; see
:meth:`EmulatorState.overview` for the answer. Polling rather than
Server-Sent Events: every answer is one short request, so the page follows
the emulator through ``refuse_connections``, a restart or a reset without a
stream to re-establish, uvicorn never waits on an open stream to stop, and a
tab left open costs one small request a second.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Sequence
from importlib import resources
from typing import Callable, Optional, Protocol

from meterstream.emulator._errors import bad_request
from meterstream.emulator._http import Answer, Receive, Scope, form
from meterstream.emulator._state import EmulatorState

__all__ = ["OVERVIEW_PATH", "PAGE_PATH", "route"]

PAGE_PATH = "/"
OVERVIEW_PATH = "/_emulator/overview"
_STATIC = "/_emulator/page/"
_FILES = {
    "index.html": b"text/html; charset=utf-8",
    "page.js": b"text/javascript; charset=utf-8",
    "page.css": b"text/css; charset=utf-8",
}
_CACHE: dict[str, bytes] = {}

Handler = Callable[[Scope, Receive], Awaitable[Answer]]


class EmulatorApp(Protocol):
    """What these endpoints use of the emulator's app (``_app.EmulatorApp``)."""

    state: EmulatorState

    async def _read(self, scope: Scope, receive: Receive) -> bytes: ...


def route(app: EmulatorApp, path: str) -> Optional[tuple[str, Sequence[str], Handler]]:
    """The endpoint name, methods and handler for *path*, or None when not ours."""
    if path == PAGE_PATH:
        return "page", ("GET",), lambda s, r: _file(app, "index.html", s, r)
    if path == OVERVIEW_PATH:
        return "admin.overview", ("GET",), lambda s, r: _overview(app, s, r)
    if path.startswith(_STATIC):
        name = path[len(_STATIC) :]
        if name in _FILES and name != "index.html":
            return "page", ("GET",), lambda s, r: _file(app, name, s, r)
    return None


def _load(name: str) -> bytes:
    body = _CACHE.get(name)
    if body is None:
        body = _CACHE[name] = resources.files(__package__).joinpath("page", name).read_bytes()
    return body


async def _file(app: EmulatorApp, name: str, scope: Scope, receive: Receive) -> Answer:
    await app._read(scope, receive)
    return 200, _load(name), [(b"content-type", _FILES[name]), (b"cache-control", b"no-cache")]


def _int(query: dict[str, str], key: str, default: int) -> int:
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise bad_request(f"{key}: must be a whole number >= 0, got {raw[:40]!r}", param=key)
    return int(raw)


async def _overview(app: EmulatorApp, scope: Scope, receive: Receive) -> Answer:
    await app._read(scope, receive)
    query = form(scope["query_string"])
    build = functools.partial(
        app.state.overview,
        after=_int(query, "after", 0),
        limit=_int(query, "limit", 50),
        hours=_int(query, "hours", 24),
        customer=query.get("customer") or None,
    )
    # Off the event loop: indexing what arrived since the previous poll (a
    # second of full load is some 200,000 events) must not stall the stream,
    # whose requests take the state's lock between the index's chunks.
    loop = asyncio.get_running_loop()
    body = await loop.run_in_executor(None, lambda: json.dumps(build()).encode())
    return 200, body, [(b"cache-control", b"no-store")]
