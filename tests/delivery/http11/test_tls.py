"""TLS: the server is verified, kept connections are checked, a stalled handshake times out."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Optional

import pytest
import trustme

from helpers.http11 import (
    OK,
    MakePool,
    MakeServer,
    PostInThread,
    answer,
    answer_then_close,
    idle_sockets,
    post_ok,
    wait_until_idle_connections_are_readable,
)
from helpers.poll import wait_for
from meterstream._exporters.stripe._http11 import TransportError


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


# -- TLS ---------------------------------------------------------------------------------


def test_tls_post_verifies_the_server_and_reuses_the_connection(
    make_server: MakeServer,
    make_pool: MakePool,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
) -> None:
    server = make_server(tls=server_tls)
    pool = make_pool(server.url, ssl_context=client_tls)

    first = pool.post("/one", b"a", {"Content-Type": "text/plain"})
    second = pool.post("/two", b"b", {"X-Chunked": "1"})

    assert (first.status, first.body) == (200, b"/one|a")
    assert (second.status, second.body) == (200, b"/two|b")
    assert [seen.connection for seen in server.requests] == [0, 0]
    assert server.requests[0].all("Host") == [f"localhost:{server.port}"]
    assert pool.opened == 1


def test_tls_with_the_default_context_refuses_an_untrusted_certificate(
    make_server: MakeServer, make_pool: MakePool, server_tls: ssl.SSLContext
) -> None:
    server = make_server(tls=server_tls)
    pool = make_pool(server.url)  # certifi's roots: the test CA is not among them

    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        post_ok(pool)

    assert wait_for(lambda: len(server.tls_errors) == 1)
    assert server.requests == []


def test_tls_refuses_a_certificate_for_another_host(
    make_server: MakeServer, make_pool: MakePool, ca: trustme.CA, client_tls: ssl.SSLContext
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("other.example").configure_cert(context)
    server = make_server(tls=context)
    pool = make_pool(server.url, ssl_context=client_tls)

    with pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        post_ok(pool)

    assert server.requests == []


def test_tls_kept_connection_the_server_closed_while_idle_is_not_used(
    make_server: MakeServer,
    make_pool: MakePool,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
) -> None:
    server = make_server(tls=server_tls)
    server.script(answer_then_close(OK), answer(OK))
    pool = make_pool(server.url, ssl_context=client_tls, idle_check_after=0)
    assert post_ok(pool).status == 200
    assert len(idle_sockets(pool)) == 1
    assert server.wait_closed(0)
    wait_until_idle_connections_are_readable(pool)

    assert post_ok(pool).body == b'{"ok": true}'

    assert [seen.connection for seen in server.requests] == [0, 1]
    assert pool.opened == 2


class SilentListener:
    """Accepts one TCP connection, reads the TLS ClientHello, and never answers."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self._listener.settimeout(5.0)
        self.port: int = self._listener.getsockname()[1]
        self.hello = threading.Event()
        self._conn: Optional[socket.socket] = None
        self._thread = threading.Thread(target=self._run, name="http11-test-silent")
        self._thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        self._conn = conn
        conn.settimeout(5.0)
        try:
            if conn.recv(1):
                self.hello.set()
        except OSError:
            pass

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._thread.join(5)
        assert not self._thread.is_alive()
        if self._conn is not None:
            self._conn.close()


@pytest.fixture
def silent_listener() -> Iterator[SilentListener]:
    listener = SilentListener()
    yield listener
    listener.close()


def test_tls_handshake_that_never_completes_times_out(
    silent_listener: SilentListener, make_pool: MakePool, client_tls: ssl.SSLContext
) -> None:
    pool = make_pool(
        f"https://localhost:{silent_listener.port}",
        timeout=5.0,
        connect_timeout=0.4,
        ssl_context=client_tls,
    )

    started = time.monotonic()
    with pytest.raises(TransportError):
        post_ok(pool)
    elapsed = time.monotonic() - started

    assert silent_listener.hello.is_set()
    assert 0.35 <= elapsed < 2.0  # bounded by connect_timeout, not by timeout


def test_close_aborts_a_post_stuck_in_the_tls_handshake(
    silent_listener: SilentListener, make_pool: MakePool, client_tls: ssl.SSLContext
) -> None:
    pool = make_pool(
        f"https://localhost:{silent_listener.port}",
        timeout=1.0,
        connect_timeout=1.0,
        ssl_context=client_tls,
    )
    running = PostInThread(pool)
    try:
        assert silent_listener.hello.wait(5)  # the client is waiting for the ServerHello
        closed_at = time.monotonic()
        pool.close()
        assert running.finished.wait(5)
    finally:
        running.thread.join(5)

    assert isinstance(running.outcome[0], TransportError)
    assert running.finished_at - closed_at < 0.3
