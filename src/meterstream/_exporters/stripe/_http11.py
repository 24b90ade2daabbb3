"""A small HTTP/1.1 client for the one request on the hot path.

Every batch is one ``POST`` to the stream endpoint, and in a web worker the
delivery threads share the GIL with the requests being served: whatever a
batch costs in Python is taken from the app. httpx (httpcore and h11 under
it) spends about 0.5 ms of CPU on such a request on a small VM; this client,
which does one thing, spends about a tenth of that (``benchmarks/`` and
``docs/performance.md`` have the numbers). httpx still opens sessions, and
carries the stream too when ``http2`` is on.

What it does:

* keep-alive connections, at most ``max_idle`` kept, newest reused first; a
  kept connection idle for a second or more that the server has closed (it
  is readable while idle) is dropped before use, as httpcore does;
* a deadline for the whole request (connect, TLS, send, and every read), so a
  server that trickles its answer cannot hold a batch: no watchdog thread;
* answers framed by ``Content-Length``, ``Transfer-Encoding: chunked`` or the
  end of the connection; ``1xx`` interim answers skipped; heads and bodies
  bounded in size;
* TLS with the verified context it is given (the exporter's: ``ca_bundle``,
  ``SSL_CERT_FILE`` and the like, else certifi's roots), for ``https``
  bases; a certificate that does not verify is a :class:`CertificateError`;
* :meth:`Http11Pool.close` aborts requests in flight: their reads fail at once.

Anything the server gets wrong is a :class:`TransportError`: the caller
retries the batch with the same identifiers, which Stripe deduplicates.
"""

from __future__ import annotations

import math
import re
import select
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Mapping
from typing import Optional
from urllib.parse import urlsplit

__all__ = ["CertificateError", "Http11Pool", "ProxyError", "Reply", "TransportError"]

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024
MAX_INTERIM = 10  # 1xx answers skipped before one request's final answer
READ_SIZE = 65536
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DIGITS = re.compile(r"[0-9]{1,18}")


class TransportError(Exception):
    """No usable answer: the request may or may not have reached the server."""


class CertificateError(TransportError):
    """The server's TLS certificate did not verify against the CA certificates given."""


class ProxyError(TransportError):
    """The proxy did not open the way to the server (a refused ``CONNECT``, a 407)."""


class Reply:
    """A final answer: status, headers (lower-case names, latin-1) and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> Optional[str]:
        """The first value of header *name* (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class _Connection:
    __slots__ = ("buffer", "idle_since", "sock", "timeout")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.idle_since = 0.0
        #: The kernel's timeout for each read or write on the socket (none yet).
        self.timeout = math.inf

    def arm(self, deadline: float, slack: float) -> None:
        """Make each read or write end within *slack* after *deadline*, never before it.

        The socket is in blocking mode with the kernel's own timeouts
        (``SO_RCVTIMEO``, ``SO_SNDTIMEO``), not Python's: with a Python
        timeout every read is a ``poll()`` and then a ``recv()``, two system
        calls that each let go of the GIL, and on a busy app thread getting
        it back costs a forced switch. They are set again only when off by
        more than *slack*.
        """
        left = deadline - time.monotonic()
        if left <= 0:
            raise TransportError("the request ran past its deadline")
        if self.timeout < left or self.timeout > left + slack:
            _kernel_timeout(self.sock, left)
            self.timeout = left


class Http11Pool:
    """Keep-alive HTTP/1.1 connections to one origin, shared by threads.

    Args:
        base_url: ``http://`` or ``https://`` host and port; its path is ignored.
        timeout: the deadline for a whole request, in seconds.
        connect_timeout: the deadline for opening a connection (within *timeout*).
        max_idle: connections kept open between requests.
        ssl_context: for ``https``; default the verified context httpx uses.
        idle_check_after: a kept connection idle at least this long (seconds)
            is checked for a close from the server before it is used.
        proxy: ``(host, port, Proxy-Authorization value or None)`` of an
            ``http://`` proxy: an ``https`` origin is reached through a
            ``CONNECT`` tunnel (TLS inside it, end to end), an ``http`` one
            with absolute-form requests.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        connect_timeout: float,
        max_idle: int = 5,
        ssl_context: Optional[ssl.SSLContext] = None,
        idle_check_after: float = 1.0,
        proxy: Optional[tuple[str, int, Optional[str]]] = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL, got {base_url!r}")
        self.base_url = base_url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = host if default_port else f"{host}:{self.port}"
        self._tls: Optional[ssl.SSLContext] = None
        if parts.scheme == "https":
            self._tls = ssl_context or _default_ssl_context()
        self._proxy = proxy
        #: What goes before the path in a request line: the origin, for
        #: absolute-form requests to an http proxy.
        self._target_prefix = ""
        self._proxy_line = ""
        if proxy is not None:
            for value in (proxy[0], proxy[2] or ""):
                if not value.isprintable() or "\r" in value or "\n" in value:
                    raise ValueError("a line break or control character in the proxy")
            self._authority = f"{host}:{self.port}"
            if self._tls is None:
                self._target_prefix = f"http://{self._host_header}"
                if proxy[2]:
                    self._proxy_line = f"Proxy-Authorization: {proxy[2]}"
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        #: How far past the deadline a read may end: a twentieth of the timeout.
        self._slack = timeout / 20
        self.max_idle = max_idle
        self.idle_check_after = idle_check_after
        self._lock = threading.Lock()
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self.closed = False
        #: Connections opened so far.
        self.opened = 0

    # -- requests -----------------------------------------------------------------

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Reply:
        """``POST`` *body* to *path*; the final answer, whatever its status.

        Raises:
            TransportError: no complete answer before the deadline.
        """
        head = self._head("POST", path, headers, len(body))
        deadline = time.monotonic() + self.timeout
        connection = self._checkout(deadline)
        try:
            reply, keep = self._exchange(connection, head + body, deadline)
        except Exception:
            self._discard(connection)
            if self.closed:
                raise TransportError("the client was closed") from None
            raise
        except BaseException:
            self._discard(connection)
            raise
        if keep:
            self._checkin(connection)
        else:
            self._discard(connection)
        return reply

    def _head(self, method: str, path: str, headers: Mapping[str, str], length: int) -> bytes:
        if not path.startswith("/") or not path.isprintable() or " " in path:
            raise ValueError(f"not a request path: {path!r}")
        lines = [f"{method} {self._target_prefix}{path} HTTP/1.1", f"Host: {self._host_header}"]
        if self._proxy_line:
            lines.append(self._proxy_line)
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} has a line break in its value")
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _exchange(
        self, connection: _Connection, request: bytes, deadline: float
    ) -> tuple[Reply, bool]:
        try:
            connection.arm(deadline, self._slack)
            connection.sock.sendall(request)
        except (OSError, ValueError) as exc:
            raise TransportError(f"sending failed: {exc!r}") from None
        return self._read_reply(connection, deadline)

    # -- answers ------------------------------------------------------------------

    def _recv(self, connection: _Connection, deadline: float) -> bytes:
        try:
            connection.arm(deadline, self._slack)
            return connection.sock.recv(READ_SIZE)
        except (socket.timeout, BlockingIOError, ssl.SSLWantReadError):
            # BlockingIOError (EAGAIN): the kernel's timeout ran out.
            raise TransportError("timed out waiting for the answer") from None
        except (OSError, ValueError) as exc:  # ValueError: closed under us
            raise TransportError(f"reading the answer failed: {exc!r}") from None

    def _read_reply(self, connection: _Connection, deadline: float) -> tuple[Reply, bool]:
        data = connection.buffer
        connection.buffer = b""
        for _ in range(MAX_INTERIM + 1):
            match = _HEAD_END.search(data)
            while match is None:
                if len(data) > MAX_HEAD:
                    raise TransportError("the answer's head is too large")
                chunk = self._recv(connection, deadline)
                if not chunk:
                    raise TransportError("the connection closed before a complete answer")
                data += chunk
                match = _HEAD_END.search(data, max(0, len(data) - len(chunk) - 3))
            if match.start() > MAX_HEAD:
                raise TransportError("the answer's head is too large")
            head, data = data[: match.start()], data[match.end() :]
            status, version, headers = _parse_head(head)
            if 100 <= status < 200:
                if status == 101:
                    raise TransportError("the server switched protocols")
                continue
            body, data, framed = self._read_body(connection, status, headers, data, deadline)
            keep = (
                framed
                and not data
                and version == "HTTP/1.1"
                and not _has_token(headers, "connection", "close")
                and not self.closed
            )
            return Reply(status, headers, body), keep
        raise TransportError(f"more than {MAX_INTERIM} interim answers")

    def _read_body(
        self,
        connection: _Connection,
        status: int,
        headers: list[tuple[str, str]],
        data: bytes,
        deadline: float,
    ) -> tuple[bytes, bytes, bool]:
        """(body, bytes left over, whether the framing allows reuse)."""
        if status in (204, 304):
            return b"", data, True
        codings = [v for k, v in headers if k == "transfer-encoding"]
        if codings:
            last = ",".join(codings).split(",")[-1].strip().lower()
            if last == "chunked":
                return self._read_chunked(connection, data, deadline)
            return self._read_to_close(connection, data, deadline), b"", False
        lengths = {v.strip() for k, v in headers if k == "content-length"}
        if not lengths:
            return self._read_to_close(connection, data, deadline), b"", False
        if len(lengths) > 1 or not _DIGITS.fullmatch(next(iter(lengths))):
            raise TransportError(f"a bad Content-Length: {sorted(lengths)!r}")
        length = int(next(iter(lengths)))
        if length > MAX_BODY:
            raise TransportError(f"the answer's body is too large ({length} bytes)")
        while len(data) < length:
            chunk = self._recv(connection, deadline)
            if not chunk:
                raise TransportError("the connection closed inside the answer's body")
            data += chunk
        return data[:length], data[length:], True

    def _read_to_close(self, connection: _Connection, data: bytes, deadline: float) -> bytes:
        parts = [data]
        size = len(data)
        while True:
            chunk = self._recv(connection, deadline)
            if not chunk:
                return b"".join(parts)
            size += len(chunk)
            if size > MAX_BODY:
                raise TransportError("the answer's body is too large")
            parts.append(chunk)

    def _read_chunked(
        self, connection: _Connection, data: bytes, deadline: float
    ) -> tuple[bytes, bytes, bool]:
        body: list[bytes] = []
        size = 0
        pos = 0

        def line() -> bytes:
            nonlocal data, pos
            while True:
                match = _LINE_END.search(data, pos)
                if match is not None:
                    text, pos = data[pos : match.start()], match.end()
                    return text
                if len(data) - pos > 4096:
                    raise TransportError("a chunk line is too long")
                more = self._recv(connection, deadline)
                if not more:
                    raise TransportError("the connection closed inside a chunked body")
                data += more

        while True:
            size_text = line().split(b";", 1)[0].strip()
            if not size_text or len(size_text) > 16 or not _is_hex(size_text):
                raise TransportError(f"a bad chunk size: {size_text[:20]!r}")
            chunk_size = int(size_text, 16)
            if chunk_size == 0:
                while line():  # trailers, up to the empty line
                    pass
                return b"".join(body), data[pos:], True
            size += chunk_size
            if size > MAX_BODY:
                raise TransportError("the answer's body is too large")
            while len(data) - pos < chunk_size:
                more = self._recv(connection, deadline)
                if not more:
                    raise TransportError("the connection closed inside a chunked body")
                data += more
            body.append(data[pos : pos + chunk_size])
            pos += chunk_size
            if line():
                raise TransportError("a chunk is longer than its size says")

    # -- connections --------------------------------------------------------------

    def _checkout(self, deadline: float) -> _Connection:
        with self._lock:
            if self.closed:
                raise TransportError("the client was closed")
            while self._idle:
                connection = self._idle.pop()
                # A connection back from its last answer within
                # idle_check_after is trusted without poll() (a system call
                # that lets go of the GIL): servers close idle connections
                # after seconds, not milliseconds, and if one did, the request
                # fails and the batch is retried.
                if time.monotonic() - connection.idle_since < self.idle_check_after or _usable(
                    connection.sock
                ):
                    self._busy.add(connection)
                    return connection
                _close(connection.sock)
        limit = min(deadline, time.monotonic() + self.connect_timeout)
        connection = _Connection(self._connect(limit))
        with self._lock:
            self.opened += 1
            if self.closed:
                _close(connection.sock)
                raise TransportError("the client was closed")
            # Busy from here, so that close() can cut a handshake short too.
            self._busy.add(connection)
        sock = connection.sock
        if isinstance(sock, ssl.SSLSocket):
            try:
                sock.settimeout(_remaining(limit))
                sock.do_handshake()
                sock.settimeout(None)  # blocking, with the kernel's timeouts (arm())
            except (OSError, ValueError, TransportError) as exc:
                self._discard(connection)
                if self.closed:
                    raise TransportError("the client was closed") from None
                where = self._host_header
                if isinstance(exc, ssl.SSLCertVerificationError):
                    raise CertificateError(
                        f"the TLS certificate of {where} did not verify "
                        f"({exc.reason}: {exc.verify_message})"
                    ) from None
                raise TransportError(f"the TLS handshake with {where} failed: {exc!r}") from None
        return connection

    def _connect(self, limit: float) -> socket.socket:
        """A TCP connection (TLS-wrapped, not yet shaken hands) within *limit*;
        through the proxy's tunnel when there is one."""
        address = (self._proxy[0], self._proxy[1]) if self._proxy else (self.host, self.port)
        where = f"the proxy {address[0]}:{address[1]}" if self._proxy else self._host_header
        try:
            sock = socket.create_connection(address, timeout=_remaining(limit))
        except socket.timeout:
            raise TransportError(f"connecting to {where} timed out") from None
        except OSError as exc:
            raise TransportError(f"connecting to {where} failed: {exc!r}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._proxy is not None and self._tls is not None:
                self._tunnel(sock, limit)
            if self._tls is None:
                sock.settimeout(None)  # blocking, with the kernel's timeouts (arm())
            else:
                return self._tls.wrap_socket(
                    sock, server_hostname=self.host, do_handshake_on_connect=False
                )
        except socket.timeout:
            _close(sock)
            raise TransportError(f"connecting through {where} timed out") from None
        except (OSError, ValueError) as exc:
            _close(sock)
            raise TransportError(f"connecting to {where} failed: {exc!r}") from None
        except TransportError:
            _close(sock)
            raise
        return sock

    def _tunnel(self, sock: socket.socket, limit: float) -> None:
        """Ask the proxy for a tunnel to the origin (``CONNECT``), within *limit*."""
        assert self._proxy is not None
        lines = [f"CONNECT {self._authority} HTTP/1.1", f"Host: {self._authority}"]
        if self._proxy[2]:
            lines.append(f"Proxy-Authorization: {self._proxy[2]}")
        sock.settimeout(_remaining(limit))
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        match = None
        while match is None:
            if len(data) > MAX_HEAD:
                raise ProxyError("the proxy's answer to CONNECT is too large")
            sock.settimeout(_remaining(limit))
            chunk = sock.recv(READ_SIZE)
            if not chunk:
                raise ProxyError("the proxy closed the connection instead of answering CONNECT")
            data += chunk
            match = _HEAD_END.search(data)
        status, _, _ = _parse_head(data[: match.start()])
        if not 200 <= status < 300:
            hint = (
                " (Proxy Authentication Required: check its user:password)" if status == 407 else ""
            )
            raise ProxyError(f"the proxy answered CONNECT {self._authority} with {status}{hint}")
        if data[match.end() :]:
            # A 2xx to CONNECT has no body: bytes now are the proxy's, not the origin's.
            raise ProxyError("the proxy sent data after its answer to CONNECT")

    def _checkin(self, connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        with self._lock:
            self._busy.discard(connection)
            if not self.closed and len(self._idle) < self.max_idle:
                self._idle.append(connection)
                return
        _close(connection.sock)

    def _discard(self, connection: _Connection) -> None:
        with self._lock:
            self._busy.discard(connection)
        _close(connection.sock)

    def close(self) -> None:
        """Close kept connections and abort requests in flight (their reads fail)."""
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy)
        for connection in idle:
            _close(connection.sock)
        for connection in busy:
            # shutdown, not close: the thread blocked in recv() wakes at once.
            # The plain socket's shutdown even for TLS: SSLSocket.shutdown()
            # drops the TLS state first, and a sendall() racing it would then
            # go out unencrypted.
            try:
                socket.socket.shutdown(connection.sock, socket.SHUT_RDWR)
            except OSError:
                pass


def _kernel_timeout(sock: socket.socket, seconds: float) -> None:
    """Bound each blocking read and write on *sock* to *seconds* (at least 1 ms)."""
    if sys.platform == "win32":  # pragma: no cover - a DWORD of milliseconds there
        value = struct.pack("L", max(1, int(seconds * 1000)))
    else:
        # struct timeval; all zeros would mean "no timeout".
        whole = int(seconds)
        micros = int((seconds - whole) * 1e6)
        value = struct.pack("ll", whole, micros if whole or micros >= 1000 else 1000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TransportError("the request ran past its deadline")
    return left


def _parse_head(head: bytes) -> tuple[int, str, list[tuple[str, str]]]:
    lines = _LINE_END.split(head)
    status_line = lines[0]
    version, _, rest = status_line.partition(b" ")
    code = rest[:3]
    if (
        version not in (b"HTTP/1.1", b"HTTP/1.0")
        or len(code) != 3
        or not code.isdigit()
        or rest[3:4] not in (b"", b" ")
    ):
        raise TransportError(f"not an HTTP/1.x status line: {status_line[:60]!r}")
    headers: list[tuple[str, str]] = []
    for raw in lines[1:]:
        name, colon, value = raw.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise TransportError(f"a malformed header line: {raw[:60]!r}")
        headers.append((name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")))
    return int(code), version.decode("ascii"), headers


def _has_token(headers: list[tuple[str, str]], name: str, token: str) -> bool:
    return any(
        token in (part.strip().lower() for part in value.split(","))
        for key, value in headers
        if key == name
    )


def _is_hex(text: bytes) -> bool:
    return all(ch in b"0123456789abcdefABCDEF" for ch in text)


def _usable(sock: socket.socket) -> bool:
    """An idle kept connection is usable when nothing (not even EOF) waits on it.

    ``poll``, not ``select``: ``select`` refuses descriptors past 1024
    (``FD_SETSIZE``), which a busy process reaches, and every kept connection
    would then look dead.
    """
    try:
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        if _poll is None:  # pragma: no cover - Windows, whose select() has no such limit
            readable, _, _ = select.select([sock], [], [], 0)
            return not readable
        poller = _poll()
        poller.register(sock, select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


_poll = getattr(select, "poll", None)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def _default_ssl_context() -> ssl.SSLContext:
    import httpx

    return httpx.create_ssl_context(verify=True, trust_env=False)
