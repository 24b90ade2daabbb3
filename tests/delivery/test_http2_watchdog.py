"""http2=true end to end against a real HTTP/2 server (hypercorn serving the
emulator over TLS, h2 chosen by ALPN), and the request watchdog that gives
httpx requests a whole-request deadline: trickling answers on the stream and
on sessions, and shutdown() while a request hangs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import trustme

import meterstream
from helpers.delivery import join_threads
from helpers.net_servers import ForwardProxy, TlsEmulator
from helpers.poll import wait_for

pytestmark = pytest.mark.slow
pytest.importorskip("h2")

KEY = "sk_test_h2"
SESSION = "/v2/billing/meter_event_session"
STREAM = "/v2/billing/meter_event_stream"
MakeClient = Callable[..., meterstream.MeterClient]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server(ca: trustme.CA, tmp_path: Path) -> Iterator[TlsEmulator]:
    with TlsEmulator(ca, tmp_path) as srv:
        yield srv


@pytest.fixture
def client_settings(server: TlsEmulator, ca: trustme.CA, tmp_path: Path) -> dict[str, Any]:
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    return {
        "api_key": KEY,
        "api_base": server.url,
        "stream_base": server.url,
        "http2": True,
        "ca_bundle": str(pem),
        "retry_initial_delay": 0.005,
        "retry_max_delay": 0.05,
        "request_timeout": 1,
        "check_event_names": False,  # the tests follow each request: no meters read
    }


def record(client: meterstream.MeterClient, n: int) -> set[str]:
    ids = {f"h2-{i}" for i in range(n)}
    for identifier in sorted(ids):
        client.record("api_calls", 1, customer="cus_h2", identifier=identifier)
    return ids


def test_http2_delivers_over_h2(server: TlsEmulator, make_client: MakeClient) -> None:
    client = make_client(batch_size=10, max_concurrent_requests=4)
    ids = record(client, 100)
    assert client.flush(20)
    assert server.identifiers() == ids
    assert client.stats()["sent"] == 100
    assert server.versions and {version for version, _ in server.versions} == {"2"}
    assert sum(1 for _, path in server.versions if path == STREAM) == 10


def test_http2_through_a_proxy_tunnel(
    server: TlsEmulator, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        client = make_client()
        ids = record(client, 5)
        assert client.flush(20)
        assert proxy.targets
    assert server.identifiers() == ids
    assert {version for version, _ in server.versions} == {"2"}


@pytest.mark.parametrize("path", [STREAM, SESSION], ids=["stream", "session"])
def test_the_watchdog_cuts_a_trickling_answer_and_the_batch_is_retried(
    server: TlsEmulator, make_client: MakeClient, path: str
) -> None:
    # A byte every 0.1 s: httpx's per-read timeout (1 s) never fires.
    server.stall[path] = 1
    client = make_client(max_retry_time=30)
    ids = record(client, 5)
    started = time.monotonic()
    assert client.flush(20)
    assert time.monotonic() - started < 10  # one request_timeout and a retry, generously
    assert server.identifiers() == ids
    exporter: Any = client.exporter
    assert exporter.watchdog.tripped >= 1
    assert sum(1 for _, p in server.versions if p == path) == 2


def test_shutdown_aborts_a_hanging_http2_request(
    server: TlsEmulator, make_client: MakeClient
) -> None:
    server.hang[STREAM] = 100
    failures: list[int] = []
    client = make_client(
        request_timeout=30, on_delivery_error=lambda events, error: failures.append(len(events))
    )
    record(client, 5)
    assert wait_for(lambda: any(p == STREAM for _, p in server.versions))
    started = time.monotonic()
    assert client.shutdown(0.5) is False
    assert time.monotonic() - started < 2
    join_threads(client)  # the request was cut, not left to its 30 s
    assert wait_for(lambda: sum(failures) == 5)
