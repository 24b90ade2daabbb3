"""The stream's ``POST`` on an asyncio event loop, for delivery from the app's own loop.

The same small HTTP/1.1 client as :mod:`._http11` (whose pool gives the
origin, TLS context, request head and deadline), over asyncio streams: the
answer is read as the event loop's other sockets are, with no thread and so
no hand-over of the GIL. Everything :mod:`._http11` accepts is accepted here;
anything else is a :class:`TransportError`, and the batch goes to the
delivery threads with the same identifiers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Optional

from ._http11 import (
    _DIGITS,
    _LINE_END,
    MAX_BODY,
    MAX_HEAD,
    MAX_INTERIM,
    READ_SIZE,
    Http11Pool,
    Reply,
    TransportError,
    _has_token,
    _is_hex,
    _parse_head,
)

__all__ = ["AsyncHttp11"]

_Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class AsyncHttp11:
    """Keep-alive connections to the origin of *pool*, used from one event loop.

    Args:
        pool: the threads' client to the same origin: host, port, TLS, head,
            timeouts and idle limit come from it.
    """

    def __init__(self, pool: Http11Pool) -> None:
        self._pool = pool
        self._idle: list[_Stream] = []
        self.closed = False
        #: Connections opened so far.
        self.opened = 0

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """``POST`` *body* to *path*; the final answer, whatever its status.

        Raises:
            TransportError: no complete answer within the pool's timeout.
        """
        if self.closed:
            raise TransportError("the client was closed")
        request = self._pool._head("POST", path, headers, len(body)) + body
        try:
            return await asyncio.wait_for(self._exchange(request), self._pool.timeout)
        except asyncio.TimeoutError:
            raise TransportError("timed out waiting for the answer") from None

    async def _exchange(self, request: bytes) -> Reply:
        stream = self._idle.pop() if self._idle else await self._connect()
        reader, writer = stream
        try:
            if not _reusable(stream):  # closed, or sent something, while idle
                _abort(stream)
                stream = await self._connect()
                reader, writer = stream
            writer.write(request)
            await writer.drain()
            reply, keep = await read_reply(reader)
        except BaseException as exc:
            _abort(stream)
            if isinstance(exc, (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)):
                raise TransportError(f"the request failed: {exc!r}") from None
            if isinstance(exc, ValueError):  # a line over the stream's limit
                raise TransportError(f"a malformed answer: {exc!r}") from None
            raise
        if keep and _reusable(stream) and not self.closed and len(self._idle) < self._pool.max_idle:
            self._idle.append(stream)
        else:
            _abort(stream)
        return reply

    async def _connect(self) -> _Stream:
        pool = self._pool
        tls = pool._tls
        try:
            stream = await asyncio.wait_for(
                asyncio.open_connection(
                    pool.host,
                    pool.port,
                    ssl=tls,
                    server_hostname=pool.host if tls is not None else None,
                    limit=MAX_HEAD,
                ),
                pool.connect_timeout,
            )
        except asyncio.TimeoutError:
            raise TransportError("timed out connecting") from None
        except OSError as exc:
            raise TransportError(f"connecting failed: {exc!r}") from None
        self.opened += 1
        return stream

    def close(self) -> None:
        """Close the kept connections (on the loop's thread)."""
        self.closed = True
        while self._idle:
            _abort(self._idle.pop())


async def read_reply(reader: asyncio.StreamReader) -> tuple[Reply, bool]:
    """The final answer on *reader*, and whether the connection may be reused."""
    for _ in range(MAX_INTERIM + 1):
        head = await reader.readuntil(b"\r\n\r\n")
        status, version, headers = _parse_head(head[:-4])
        if 100 <= status < 200:
            if status == 101:
                raise TransportError("the server switched protocols")
            continue
        body, framed = await _read_body(reader, status, headers)
        keep = framed and version == "HTTP/1.1" and not _has_token(headers, "connection", "close")
        return Reply(status, headers, body), keep
    raise TransportError(f"more than {MAX_INTERIM} interim answers")


async def _read_body(
    reader: asyncio.StreamReader, status: int, headers: list[tuple[str, str]]
) -> tuple[bytes, bool]:
    """(body, whether the framing allows reuse): as ``Http11Pool._read_body``."""
    if status in (204, 304):
        return b"", True
    codings = [v for k, v in headers if k == "transfer-encoding"]
    if codings:
        if ",".join(codings).split(",")[-1].strip().lower() == "chunked":
            return await _read_chunked(reader)
        return await _read_to_close(reader), False
    lengths = {v.strip() for k, v in headers if k == "content-length"}
    if not lengths:
        return await _read_to_close(reader), False
    if len(lengths) > 1 or not _DIGITS.fullmatch(next(iter(lengths))):
        raise TransportError(f"a bad Content-Length: {sorted(lengths)!r}")
    length = int(next(iter(lengths)))
    if length > MAX_BODY:
        raise TransportError(f"the answer's body is too large ({length} bytes)")
    return await reader.readexactly(length), True


async def _read_to_close(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = await reader.read(READ_SIZE)
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > MAX_BODY:
            raise TransportError("the answer's body is too large")
        parts.append(chunk)


async def _read_chunked(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    """A chunked body, and whether nothing came after it (the connection may
    be reused): as ``Http11Pool._read_chunked``, over our own buffer so that
    a line too long fails as soon as it is."""
    data = b""
    pos = 0
    body: list[bytes] = []
    size = 0

    async def more() -> None:
        nonlocal data
        chunk = await reader.read(READ_SIZE)
        if not chunk:
            raise TransportError("the connection closed inside a chunked body")
        data += chunk

    async def line() -> bytes:
        nonlocal pos
        while True:
            match = _LINE_END.search(data, pos)
            if match is not None:
                text, pos = data[pos : match.start()], match.end()
                return text
            if len(data) - pos > 4096:
                raise TransportError("a chunk line is too long")
            await more()

    while True:
        size_text = (await line()).split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 16 or not _is_hex(size_text):
            raise TransportError(f"a bad chunk size: {size_text[:20]!r}")
        chunk_size = int(size_text, 16)
        if chunk_size == 0:
            while await line():  # trailers, up to the empty line
                pass
            return b"".join(body), pos == len(data)
        size += chunk_size
        if size > MAX_BODY:
            raise TransportError("the answer's body is too large")
        while len(data) - pos < chunk_size:
            await more()
        body.append(data[pos : pos + chunk_size])
        pos += chunk_size
        if await line():
            raise TransportError("a chunk is longer than its size says")


def _reusable(stream: _Stream) -> bool:
    """Open, and nothing unasked-for waiting on it: bytes left after an answer
    would be read as the start of the next request's answer."""
    reader, writer = stream
    if reader.at_eof() or writer.is_closing() or reader.exception() is not None:
        return False
    # StreamReader has no public way to see what it holds unread.
    return not getattr(reader, "_buffer", b"")


def _abort(stream: Optional[_Stream]) -> None:
    if stream is not None:
        transport = stream[1].transport
        transport.abort()
