"""A deadline for a whole HTTP request, not for each read.

httpx's timeouts bound each read, so a server that trickles a byte every so
often holds a request (and the batch in it) forever. The watchdog knows the
sockets of the connections the exporter opened (from httpcore's ``trace``
extension) and, when a request outlives its deadline, shuts them down: the
blocked read fails at once and the batch is retried like any transport error,
with the same identifiers. It also aborts whatever is in flight at shutdown.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

__all__ = ["RequestWatchdog"]


class RequestWatchdog:
    def __init__(self, limit: float) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._inflight: dict[int, float] = {}
        self._next = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        #: How many times a request ran past its deadline.
        self.tripped = 0

    def trace(self, event_name: str, info: dict[str, Any]) -> None:
        """httpcore's ``trace`` extension: note each new connection's socket.

        The socket after TLS too (``start_tls``, direct or inside a proxy's
        tunnel): wrapping a socket in TLS detaches the plain one, and shutting
        that down would do nothing.
        """
        if event_name.endswith((".connect_tcp.complete", ".start_tls.complete")):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                with self._lock:
                    self._sockets.add(sock)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """The block is one request: past the deadline, its connection is cut."""
        with self._wake:
            key = self._next
            self._next += 1
            self._inflight[key] = time.monotonic()
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="meterstream-watchdog", daemon=True
                )
                self._thread.start()
            self._wake.notify()
        try:
            yield
        finally:
            with self._lock:
                self._inflight.pop(key, None)

    def _run(self) -> None:
        tick = max(0.01, min(0.1, self._limit / 4))
        with self._wake:
            while not self._closed:
                if not self._inflight:
                    self._wake.wait()
                    continue
                self._wake.wait(tick)
                now = time.monotonic()
                overdue = [
                    k for k, started in self._inflight.items() if now - started > self._limit
                ]
                if overdue:
                    self.tripped += 1
                    for key in overdue:
                        self._inflight.pop(key, None)
                    self._cut_all()

    def _cut_all(self) -> None:
        # Called with the lock held. Which connection a request uses is not
        # visible, so all are cut: the others' requests fail and are retried
        # with their identifiers, which Stripe dedupes. Rare by design.
        for sock in list(self._sockets):
            # The plain socket's shutdown even for TLS: SSLSocket.shutdown()
            # drops the TLS state first, and a send racing it would go out in
            # clear (as in _http11.Http11Pool.close).
            with contextlib.suppress(OSError, ValueError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop watching, and abort whatever request is still in flight."""
        with self._wake:
            self._closed = True
            if self._inflight:
                self._cut_all()
            self._wake.notify_all()
