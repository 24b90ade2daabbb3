"""Proxies and CA certificates, end to end: a TLS emulator with a trustme CA
(hypercorn), a real forward proxy on 127.0.0.1, and the environment variables
requests, httpx and stripe-python read."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import trustme

import meterstream
from helpers.delivery import Failures
from helpers.net_servers import ForwardProxy, TlsEmulator
from helpers.poll import wait_for
from meterstream._exporters.stripe._api import StripeAPI

pytestmark = pytest.mark.slow

KEY = "sk_test_network"
MakeClient = Callable[..., meterstream.MeterClient]

ENVIRONMENT = (
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "REQUEST_METHOD",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_pem(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_emulator(ca: trustme.CA, tmp_path: Path) -> Iterator[TlsEmulator]:
    with TlsEmulator(ca, tmp_path, alpn=("http/1.1",)) as server:
        yield server


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as server:
        yield server


@pytest.fixture
def client_settings(tls_emulator: TlsEmulator, failures: Failures) -> dict[str, Any]:
    return {
        "api_key": KEY,
        "api_base": tls_emulator.url,
        "stream_base": tls_emulator.url,
        "retry_initial_delay": 0.005,
        "retry_max_delay": 0.05,
        "request_timeout": 5,
        "check_event_names": False,  # the tests follow each request: no meters read
        "on_delivery_error": lambda events, error: failures.append((list(events), error)),
    }


def record(client: meterstream.MeterClient, n: int) -> set[str]:
    ids = {f"net-{i}" for i in range(n)}
    for identifier in sorted(ids):
        client.record("api_calls", 1, customer="cus_net", identifier=identifier)
    return ids


def test_https_proxy_from_the_environment_carries_sessions_and_the_stream(
    tls_emulator: TlsEmulator,
    proxy: ForwardProxy,
    make_client: MakeClient,
    ca_pem: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    client = make_client(ca_bundle=ca_pem)
    ids = record(client, 30)
    assert client.flush(20)
    assert tls_emulator.identifiers() == ids
    assert client.stats()["sent"] == 30
    # Both endpoints through one CONNECT tunnel, kept alive.
    assert proxy.targets and set(proxy.targets) == {f"localhost:{tls_emulator.port}"}
    assert {method for method, _, _ in proxy.requests} == {"CONNECT"}
    paths = {path for _, path in tls_emulator.versions}
    assert paths == {"/v2/billing/meter_event_session", "/v2/billing/meter_event_stream"}
    exporter: Any = client.exporter
    assert exporter._stream is not None  # the lean client, tunnelled


def test_httpx_carries_the_stream_through_the_proxy_too(
    tls_emulator: TlsEmulator,
    proxy: ForwardProxy,
    make_client: MakeClient,
    ca_pem: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # http2=true goes over httpx (HTTP/1.1 here: the server offers only that).
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    client = make_client(ca_bundle=ca_pem, http2=True)
    ids = record(client, 30)
    assert client.flush(20)
    assert tls_emulator.identifiers() == ids
    assert set(proxy.targets) == {f"localhost:{tls_emulator.port}"}


def test_an_explicit_proxy_with_credentials_wins_over_the_environment(
    tls_emulator: TlsEmulator,
    make_client: MakeClient,
    ca_pem: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens there
    with ForwardProxy(credentials=("meter user", "p@ss:word")) as proxy:
        url = proxy.url.replace("http://", "http://meter%20user:p%40ss%3Aword@")
        client = make_client(ca_bundle=ca_pem, proxy=url)
        assert "p%40ss" not in repr(client.settings) and "***" in repr(client.settings)
        ids = record(client, 5)
        assert client.flush(20)
        assert tls_emulator.identifiers() == ids
        assert proxy.requests
        for _, _, auth in proxy.requests:
            assert auth == "Basic bWV0ZXIgdXNlcjpwQHNzOndvcmQ="  # "meter user:p@ss:word"
    assert "p@ss" not in caplog.text and "p%40ss" not in caplog.text


def test_a_proxy_that_refuses_the_credentials_is_reported_once_and_the_events_kept(
    tls_emulator: TlsEmulator,
    make_client: MakeClient,
    ca_pem: str,
    failures: Failures,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with ForwardProxy(credentials=("user", "right")) as proxy:
        client = make_client(
            ca_bundle=ca_pem, proxy=proxy.url.replace("http://", "http://user:wrong@")
        )
        record(client, 5)
        assert client.flush(1) is False
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, errors
        assert "proxy" in errors[0] and "user:***@127.0.0.1" in errors[0]
        assert "wrong" not in caplog.text
        assert client.stats()["queued"] == 5 and failures == []


def test_an_https_proxy_is_verified_with_the_ca_bundle_and_tunnels_tls(
    tls_emulator: TlsEmulator, ca: trustme.CA, make_client: MakeClient, ca_pem: str
) -> None:
    # TLS to the proxy, and TLS to the emulator inside the tunnel: httpx's path.
    proxy_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(proxy_tls)
    with ForwardProxy(tls=proxy_tls) as proxy:
        client = make_client(ca_bundle=ca_pem, proxy=proxy.url)
        ids = record(client, 5)
        assert client.flush(20)
        assert proxy.targets and set(proxy.targets) == {f"localhost:{tls_emulator.port}"}
    assert tls_emulator.identifiers() == ids
    exporter: Any = client.exporter
    assert exporter._stream is None


def test_no_proxy_bypasses_the_proxy_and_keeps_the_lean_client(
    tls_emulator: TlsEmulator,
    proxy: ForwardProxy,
    make_client: MakeClient,
    ca_pem: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "example.com,localhost")
    client = make_client(ca_bundle=ca_pem)
    ids = record(client, 5)
    assert client.flush(20)
    assert tls_emulator.identifiers() == ids
    assert proxy.requests == []
    exporter: Any = client.exporter
    assert exporter._stream is not None  # direct: the lean client


def test_http_proxy_forwards_an_http_base_in_absolute_form(
    proxy: ForwardProxy, failures: Failures, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meterstream.emulator import Emulator

    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    with Emulator(auto_create_meters=True) as emulator:
        client = meterstream.MeterClient(
            api_key=KEY,
            api_base=emulator.api_base,
            stream_base=emulator.stream_base,
            check_event_names=False,  # the proxy's requests are the stream's only
        )
        try:
            ids = record(client, 5)
            assert client.flush(20)
            assert {e["identifier"] for e in emulator.state.events()} == ids
        finally:
            client.shutdown(1)
    assert proxy.requests
    for method, target, _ in proxy.requests:
        assert method == "POST" and target.startswith(emulator.url + "/v2/billing/meter_event_")


@pytest.mark.parametrize("via_proxy", [False, True], ids=["direct", "proxy"])
@pytest.mark.parametrize("http2", [False, True], ids=["lean", "httpx"])
def test_a_certificate_from_another_ca_is_refused_naming_ca_bundle(
    tls_emulator: TlsEmulator,
    proxy: ForwardProxy,
    make_client: MakeClient,
    failures: Failures,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    via_proxy: bool,
    http2: bool,
) -> None:
    caplog.set_level(logging.DEBUG)
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    settings: dict[str, Any] = {"ca_bundle": str(other), "max_retry_time": 1.5, "http2": http2}
    if via_proxy:
        settings["proxy"] = proxy.url
    client = make_client(**settings)
    record(client, 5)
    assert client.flush(15)  # settled: out of retries, handed over
    assert wait_for(lambda: len(failures) == 1)
    assert tls_emulator.identifiers() == set()
    ((events, error),) = failures
    assert len(events) == 5
    assert "ca_bundle" in str(error) and "certificate" in str(error).lower()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    reported = [message for message in errors if message.startswith("TLS to")]
    assert len(reported) == 1, errors  # once, however many attempts
    assert str(other) in reported[0] and "ca_bundle" in reported[0]
    assert client.stats()["retried"] >= 2


def test_ssl_cert_file_is_used_when_ca_bundle_is_unset(
    tls_emulator: TlsEmulator,
    make_client: MakeClient,
    ca_pem: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", ca_pem)
    client = make_client()
    ids = record(client, 5)
    assert client.flush(20)
    assert tls_emulator.identifiers() == ids


def test_requests_ca_bundle_is_used_when_ca_bundle_is_unset(
    tls_emulator: TlsEmulator,
    proxy: ForwardProxy,
    make_client: MakeClient,
    ca_pem: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_pem)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    client = make_client()
    ids = record(client, 5)
    assert client.flush(20)
    assert tls_emulator.identifiers() == ids
    assert proxy.requests


def test_the_v1_api_client_goes_through_the_proxy_with_the_ca_bundle(
    tls_emulator: TlsEmulator,
    proxy: ForwardProxy,
    ca_pem: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", ca_pem)
    with StripeAPI(KEY, tls_emulator.url) as api:
        assert api.meters() == []
    assert proxy.targets == [f"localhost:{tls_emulator.port}"]
