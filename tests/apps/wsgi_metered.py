"""A tiny WSGI app for the gunicorn fork test: meters one event per request.

Configured at import time, so under ``gunicorn --preload`` the client is made
in the master and inherited by every forked worker.
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
    flush_interval=0.2,
)


@meterstream.meter("api_calls")
def handle(path: str) -> bytes:
    return f"ok {path} {os.getpid()}".encode()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    customer = query.get("customer", [""])[0] or None
    with meterstream.customer(customer):
        body = handle(environ.get("PATH_INFO", "/"))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
