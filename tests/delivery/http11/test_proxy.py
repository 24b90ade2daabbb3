"""The lean client through an http:// proxy: CONNECT tunnels and absolute-form
requests, against a raw-socket proxy that answers as each test scripts."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Callable

import pytest

from meterstream._exporters.stripe._http11 import Http11Pool, ProxyError, TransportError


class ScriptedProxy:
    """Accepts connections, keeps the first request head, answers *answer*."""

    def __init__(self, answer: Callable[[socket.socket, bytes], None]) -> None:
        self._answer = answer
        self.heads: list[bytes] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(5)
            with sock:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.heads.append(data)
                self._answer(sock, data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[socket.socket, bytes], None]], ScriptedProxy]]:
    proxies: list[ScriptedProxy] = []

    def make(answer: Callable[[socket.socket, bytes], None]) -> ScriptedProxy:
        proxies.append(ScriptedProxy(answer))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


def send(reply: bytes) -> Callable[[socket.socket, bytes], None]:
    return lambda sock, head: sock.sendall(reply)


def test_a_refused_connect_is_a_proxy_error_naming_the_status(scripted: Callable) -> None:
    proxy = scripted(send(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"))
    pool = Http11Pool(
        "https://stripe.invalid",
        timeout=5,
        connect_timeout=5,
        proxy=("127.0.0.1", proxy.port, None),
    )
    with pytest.raises(ProxyError, match="407.*user:password"):
        pool.post("/v2/x", b"{}", {})
    assert proxy.heads[0].startswith(b"CONNECT stripe.invalid:443 HTTP/1.1\r\n")
    assert b"Host: stripe.invalid:443\r\n" in proxy.heads[0]


def test_bytes_after_the_connect_answer_are_refused(scripted: Callable) -> None:
    proxy = scripted(send(b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n"))
    pool = Http11Pool(
        "https://stripe.invalid",
        timeout=5,
        connect_timeout=5,
        proxy=("127.0.0.1", proxy.port, "Basic dTpw"),
    )
    with pytest.raises(ProxyError, match="after its answer"):
        pool.post("/v2/x", b"{}", {})
    assert b"Proxy-Authorization: Basic dTpw\r\n" in proxy.heads[0]


def test_a_silent_proxy_is_bounded_by_the_connect_timeout(scripted: Callable) -> None:
    stop = threading.Event()
    proxy = scripted(lambda sock, head: stop.wait(10))
    pool = Http11Pool(
        "https://stripe.invalid",
        timeout=5,
        connect_timeout=0.3,
        proxy=("127.0.0.1", proxy.port, None),
    )
    started = time.monotonic()
    try:
        with pytest.raises(TransportError, match="timed out"):
            pool.post("/v2/x", b"{}", {})
        assert time.monotonic() - started < 3
    finally:
        stop.set()


def test_an_http_origin_gets_absolute_form_requests_with_the_credentials(
    scripted: Callable,
) -> None:
    proxy = scripted(send(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}"))
    pool = Http11Pool(
        "http://emulator.internal:12111",
        timeout=5,
        connect_timeout=5,
        proxy=("127.0.0.1", proxy.port, "Basic dTpw"),
    )
    try:
        reply = pool.post("/v2/billing/meter_event_stream", b"{}", {"Authorization": "Bearer t"})
    finally:
        pool.close()
    assert reply.status == 202
    head = proxy.heads[0]
    assert head.startswith(
        b"POST http://emulator.internal:12111/v2/billing/meter_event_stream HTTP/1.1\r\n"
    )
    assert b"Host: emulator.internal:12111\r\n" in head
    assert b"Proxy-Authorization: Basic dTpw\r\n" in head


def test_a_proxy_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError):
        Http11Pool("https://a.invalid", timeout=1, connect_timeout=1, proxy=("p", 1, "x\r\ny"))
