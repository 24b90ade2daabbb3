"""A fake model server: OpenAI's and Anthropic's wire formats on 127.0.0.1, streams included.

Point the real SDKs at it to test code that calls models, metered or not::

    from meterstream.testing.llm import FakeModelServer

    with FakeModelServer() as fake:
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="sk-test")
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        assert fake.calls[0].tokens == {"input": 3, "output": 5}

It answers ``POST /v1/chat/completions``, ``/v1/responses``,
``/v1/embeddings`` (OpenAI) and ``/v1/messages`` (Anthropic), with
``stream: true`` as server-sent events. The tokens it reports: ``input`` is
the number of words in the request's text, ``output`` the number of words of
the reply; ``cached_input``, ``cache_write`` and ``reasoning`` are the
server's settings. A request can change what it gets with headers (pass
them as the SDKs' ``extra_headers=``):

- ``x-fake-tokens: input=12,output=5,cached_input=3``: these counts instead.
- ``x-fake-stop-after: N``: end the stream cleanly after N events.
- ``x-fake-error-after: N``: send the provider's error event after N events.
- ``x-fake-no-usage: 1``: no usage block at all.
- ``x-fake-reply: some text``: this reply (its words are the output tokens).
- ``x-fake-status: 429``: answer with this status and the provider's error body.

Each request is kept in :attr:`FakeModelServer.calls`, with the tokens the
usage the server sent added up to (the counts do not overlap; see ``docs/llm.md``).
"""

from __future__ import annotations

import base64
import json
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Optional

from meterstream.testing._llm_wire import (
    TOKEN_TYPES,
    Frame,
    chat_body,
    chat_frames,
    clean,
    message_body,
    messages_frames,
    response_body,
    responses_frames,
)

__all__ = ["FakeCall", "FakeModelServer"]


@dataclass
class FakeCall:
    """One request the fake model server answered.

    Attributes:
        api: ``"chat"``, ``"responses"``, ``"embeddings"`` or ``"messages"``.
        body: the request's JSON body.
        headers: the request's headers, names lowercased.
        stream: whether it asked for a stream.
        tokens: the token counts the usage it was sent adds up to, by type
            (``input``, ``cached_input``, ``cache_write``, ``output``,
            ``reasoning``; zeros left out): for a stream cut short, what the
            events sent before the cut reported; empty when none did.
    """

    api: str
    body: dict[str, Any]
    headers: dict[str, str]
    stream: bool
    tokens: dict[str, int] = field(default_factory=dict)


def _text(value: Any) -> Iterator[str]:
    """Every string under *value*'s ``content`` / ``text`` / ``input`` keys, or itself."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _text(item)
    elif isinstance(value, dict):
        for key in ("content", "text", "input"):
            if key in value:
                yield from _text(value[key])


def _words(body: dict[str, Any]) -> int:
    parts = [*_text(body.get("messages")), *_text(body.get("input")), *_text(body.get("system"))]
    return max(1, sum(len(p.split()) for p in parts))


class FakeModelServer:
    """OpenAI and Anthropic wire formats, served by a thread on 127.0.0.1.

    Args:
        host: interface to listen on.
        port: TCP port; 0 picks a free one.
        reply: the text every answer carries (its words are the output tokens).
        cached_input: cached input tokens reported with each answer.
        cache_write: input tokens reported written to the cache.
        reasoning: reasoning (thinking) tokens reported with each answer.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        reply: str = "Hello from the fake model",
        cached_input: int = 0,
        cache_write: int = 0,
        reasoning: int = 0,
    ) -> None:
        self.reply = reply
        self.extra = {"cached_input": cached_input, "cache_write": cache_write}
        self.reasoning = reasoning
        #: The requests answered, in order.
        self.calls: list[FakeCall] = []
        self._lock = threading.Lock()
        self._host = host
        self._http = _QuietServer((host, port), _handler(self))
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        """``http://host:port``, the server's root."""
        return f"http://{self._host}:{self._http.server_address[1]}"

    @property
    def openai_base_url(self) -> str:
        """The ``base_url`` to give ``openai.OpenAI``."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """The ``base_url`` to give ``anthropic.Anthropic``."""
        return self.url

    def start(self) -> FakeModelServer:
        """Serve in a daemon thread; returns the server."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._http.serve_forever, name="meterstream-fake-models", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join(5)
            self._thread = None
        self._http.server_close()

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def tokens_for(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, int]:
        """The counts a request gets, by token type (before any cut)."""
        given = headers.get("x-fake-tokens")
        if given:
            tokens = dict.fromkeys(TOKEN_TYPES, 0)
            for part in given.split(","):
                name, _, value = part.partition("=")
                tokens[name.strip()] = int(value)
            return tokens
        output = len(headers.get("x-fake-reply", self.reply).split())
        limit = body.get("max_tokens") or body.get("max_output_tokens")
        if isinstance(limit, int) and limit > 0:
            output = min(output, limit)
        return {"input": _words(body), **self.extra, "output": output, "reasoning": self.reasoning}

    def _add(self, call: FakeCall) -> None:
        with self._lock:
            self.calls.append(call)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many clients connecting at once (the default is 5)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], OSError):  # a client hanging up is no news
            super().handle_error(request, client_address)


def _handler(server: FakeModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send_json(
            self, status: int, payload: Any, headers: Optional[dict[str, str]] = None
        ) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _error_body(self, api: str, status: int) -> Any:
            message = f"fake error {status}"
            if api == "messages":
                return {"type": "error", "error": {"type": "api_error", "message": message}}
            return {"error": {"message": message, "type": "server_error", "code": None}}

        def _send_stream(
            self, call: FakeCall, frames: list[Frame], stop_after: int, error_after: int
        ) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            try:
                for index, (name, data, reported) in enumerate(frames):
                    if index == error_after:
                        error = self._error_body(call.api, 500)
                        name = "error" if call.api == "messages" else None
                        self._chunk(name, error)
                        break
                    if index == stop_after:
                        break
                    self._chunk(name, data)
                    if reported is not None:
                        call.tokens = reported
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:  # the client went away: what it was sent stays recorded
                self.close_connection = True

        def _chunk(self, name: Optional[str], data: Any) -> None:
            text = f"event: {name}\n" if name else ""
            text += f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
            raw = text.encode()
            self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
            self.wfile.flush()

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = self.path.split("?", 1)[0]
            api = {
                "/v1/chat/completions": "chat",
                "/v1/responses": "responses",
                "/v1/embeddings": "embeddings",
                "/v1/messages": "messages",
            }.get(path)
            if api is None:
                self._send_json(404, {"error": {"message": f"no route {path}"}})
                return
            stream = body.get("stream") is True
            call = FakeCall(api, body, headers, stream)
            server._add(call)
            status = int(headers.get("x-fake-status") or 200)
            if status != 200:
                self._send_json(status, self._error_body(api, status), {"x-should-retry": "false"})
                return
            usage = headers.get("x-fake-no-usage") != "1"
            t = server.tokens_for(body, headers)
            model = str(body.get("model") or "fake-model")
            reply = headers.get("x-fake-reply", server.reply)
            if api == "embeddings":
                t = {**dict.fromkeys(TOKEN_TYPES, 0), "input": t["input"]}
                vector = [0.25, 0.5, 0.75]
                embedding: Any = vector
                if body.get("encoding_format") == "base64":
                    embedding = base64.b64encode(struct.pack("<3f", *vector)).decode()
                answer = {
                    "object": "list",
                    "model": model,
                    "data": [{"object": "embedding", "index": 0, "embedding": embedding}],
                    "usage": {"prompt_tokens": t["input"], "total_tokens": t["input"]}
                    if usage
                    else None,
                }
            elif not stream:
                build = {"chat": chat_body, "responses": None, "messages": message_body}[api]
                if api == "responses":
                    answer = response_body(model, reply, t, "completed", usage)
                else:
                    assert build is not None
                    answer = build(model, reply, t, usage)
            else:
                if api == "chat":
                    frames = chat_frames(model, reply, t if usage else {}, body)
                elif api == "responses":
                    frames = responses_frames(model, reply, t, usage)
                else:
                    frames = messages_frames(model, reply, t, usage)
                stop = int(headers.get("x-fake-stop-after") or len(frames) + 1)
                error = int(headers.get("x-fake-error-after") or len(frames) + 1)
                self._send_stream(call, frames, stop, error)
                return
            if usage:
                call.tokens = clean(t)
            self._send_json(200, answer)

    return Handler
