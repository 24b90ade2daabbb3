"""A WSGI app for the spool gunicorn test: one event per request, on a shared spool.

Configured at import time, so under ``gunicorn --preload`` the client (and its
spool) is made in the master and inherited by every forked worker. The
request names the event's identifier: ``/?id=<identifier>``.
"""

from __future__ import annotations

import os
from typing import Any, Callable
from urllib.parse import parse_qs

import meterstream

meterstream.configure(
    api_key=os.environ["EMULATOR_API_KEY"],
    api_base=os.environ["EMULATOR_URL"],
    stream_base=os.environ["EMULATOR_URL"],
    spool_path=os.environ["SPOOL_PATH"],
    flush_interval=0.2,
)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    ident = query.get("id", [""])[0] or None
    meterstream.record("api_calls", customer="cus_wsgi", identifier=ident)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"ok {os.getpid()}".encode()]
