"""Opening a session has the stream's bounds: a whole-request deadline, a cap on
the answer's size, and flush()/shutdown() deadlines that hold meanwhile."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest

import meterstream
from helpers import hostile_server as hs
from helpers.delivery import SECRET, delivered_all, join_threads, record
from helpers.poll import wait_for

MakeClient = Callable[..., meterstream.MeterClient]

#: What the flooding server sends at most: enough to show a reader that
#: keeps reading, small enough not to hurt the machine when one does.
FLOOD_LIMIT = 64 * 1024 * 1024


class FloodServer(hs.HostileServer):
    """The hostile server, plus ``flood`` answers: a 200 that announces (or,
    without a length, implies) a huge body and sends it as fast as it can."""

    def __init__(self, secret_key: str) -> None:
        super().__init__(secret_key)
        self.flooded = 0  # body bytes the flood answers got into the socket

    def _answer(self, sock: socket.socket, request: hs.Request) -> bool:
        with self._lock:
            script = self._scripts[request.endpoint] if request.endpoint != "other" else None
            action = script[0] if script else None
        if action is None or action.kind not in ("flood", "flood-unframed"):
            return super()._answer(sock, request)
        self._next_action(request.endpoint)
        request.action = action.kind
        self._record(request)
        length = b"Content-Length: 1073741824\r\n" if action.kind == "flood" else b""
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + length + b"\r\n")
        block = b'{"pad": "' + b"x" * 65536
        sock.settimeout(2.0)
        try:
            while self.flooded < FLOOD_LIMIT and not self._stop.is_set():
                sock.sendall(block)
                with self._lock:
                    self.flooded += len(block)
        except OSError:
            pass  # the client hung up: what it should do
        return False


@pytest.fixture
def server() -> Iterator[FloodServer]:
    with FloodServer(SECRET) as srv:
        yield srv


@pytest.fixture
def client_settings(server: FloodServer) -> dict[str, Any]:
    return {
        "api_key": SECRET,
        "api_base": server.url,
        "stream_base": server.url,
        "retry_initial_delay": 0.005,
        "retry_max_delay": 0.05,
        "request_timeout": 2,
        "max_retry_time": 60,
        "check_event_names": False,  # sessions and the stream only
    }


def test_a_trickling_session_answer_is_cut_at_the_request_deadline(
    server: FloodServer, make_client: MakeClient
) -> None:
    # A 200 whose body comes a byte every 0.1 s: each read is prompt, the
    # whole answer never ends. Held the session lock for as long as it lasted.
    server.script("session", hs.Action("drip", delay=0.1))
    client = make_client()
    ids = record(client, 5)
    started = time.monotonic()
    assert client.flush(20)
    assert time.monotonic() - started < 12  # request_timeout (2 s) and a retry, generously
    delivered_all(server, client, ids)
    assert len(server.requests_to("session")) == 2


@pytest.mark.parametrize("kind", ["flood", "flood-unframed"])
@pytest.mark.parametrize("http2", [False, True], ids=["lean", "httpx"])
def test_an_oversized_session_answer_is_refused_not_read(
    server: FloodServer, make_client: MakeClient, kind: str, http2: bool
) -> None:
    # httpx carries the session with http2=true (plain http here: HTTP/1.1),
    # a transport, or a proxy: the same bound holds there.
    server.script("session", hs.Action(kind))
    client = make_client(http2=http2)
    ids = record(client, 5)
    assert client.flush(20)
    delivered_all(server, client, ids)
    # The client stopped reading at its bound (1 MiB); what got further sat in
    # the kernel's socket buffers. A client that read on would take it all.
    assert server.flooded < FLOOD_LIMIT / 4


@pytest.mark.parametrize("kind", ["hang", "drip"])
def test_shutdown_holds_its_deadline_while_a_session_is_being_opened(
    server: FloodServer, make_client: MakeClient, kind: str
) -> None:
    server.set_default("session", hs.Action(kind, delay=0.1))
    failures: list[int] = []
    client = make_client(
        request_timeout=30, on_delivery_error=lambda events, error: failures.append(len(events))
    )
    record(client, 5)
    assert wait_for(lambda: len(server.requests_to("session")) == 1)
    assert client.flush(0.3) is False
    started = time.monotonic()
    assert client.shutdown(0.5) is False
    assert time.monotonic() - started < 2
    # The session request is aborted, not left to run out its 30 s: the
    # delivery threads end, and the events are reported, not lost.
    join_threads(client)
    assert wait_for(lambda: sum(failures) == 5)
    assert client.stats()["queued"] == 0


def test_other_senders_are_not_held_past_the_deadline_by_a_session_being_opened(
    server: FloodServer, make_client: MakeClient
) -> None:
    # Four senders wait on the one session being opened: none of them waits
    # longer than that request's deadline.
    server.script("session", hs.Action("drip", delay=0.1))
    client = make_client(max_concurrent_requests=4, batch_size=2)
    ids = record(client, 40)
    done = threading.Event()
    threading.Thread(target=lambda: done.set() if client.flush(20) else None).start()
    assert done.wait(15)
    delivered_all(server, client, ids)
