"""An app that keeps its events in the buffer, for the SIGTERM measurements.

Each request ``/?id=IDENT`` records one event with that identifier. With a
60-second flush_interval, only an orderly shutdown (``atexit``) or
``drain_on_sigterm()`` delivers them before the process ends. The same module
serves WSGI (``app``: gunicorn, Django's runserver), ASGI (``asgi_app``:
uvicorn), Flask (``flask_app``) and a Celery task (``celery_app``).

Environment: EMULATOR_URL, EMULATOR_API_KEY; SIGTERM_DRAIN=1 calls
``meterstream.drain_on_sigterm()`` at import.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable
from urllib.parse import parse_qs

import meterstream

meterstream.configure(
    api_key=os.environ["EMULATOR_API_KEY"],
    api_base=os.environ["EMULATOR_URL"],
    stream_base=os.environ["EMULATOR_URL"],
    flush_interval=60,
    shutdown_timeout=5,
)
if os.environ.get("SIGTERM_DRAIN") == "1" and threading.current_thread() is threading.main_thread():
    # Django's runserver imports the app on a thread of its own: there the
    # settings module makes the call instead.
    meterstream.drain_on_sigterm()

EVENT = "sigterm_test"


def record(query: str) -> bytes:
    ident = parse_qs(query).get("id", [""])[0]
    if ident:
        meterstream.record(EVENT, 1, customer="cus_sigterm", identifier=ident)
    return f"ok {os.getpid()}".encode()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = record(environ.get("QUERY_STRING", ""))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":  # as Starlette and FastAPI apps do
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": message["type"] + ".complete"})
            if kind == "shutdown":
                return
    if scope["type"] != "http":
        return
    body = record(scope.get("query_string", b"").decode())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _asgi_middleware() -> Any:
    try:
        from meterstream.integrations.asgi import MeterstreamMiddleware
    except ImportError:
        return None
    return MeterstreamMiddleware(asgi_app)


#: The raw app behind meterstream's ASGI middleware (which flushes at lifespan shutdown).
asgi_middleware_app = _asgi_middleware()


def _flask() -> Any:
    try:
        import flask
    except ImportError:
        return None
    flask_app = flask.Flask(__name__)

    @flask_app.route("/")
    def index() -> bytes:
        return record(flask.request.query_string.decode())

    return flask_app


flask_app = _flask()
