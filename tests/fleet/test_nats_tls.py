"""TLS to NATS: nats_tls_ca verifies the server; without it the start check fails."""

from __future__ import annotations

from pathlib import Path

import pytest

import meterstream
from helpers.fleet import read_stream
from helpers.nats_server import UNAVAILABLE, NatsServer
from meterstream.errors import ConfigurationError

trustme = pytest.importorskip("trustme")


@pytest.mark.slow
def test_a_tls_server_is_reached_with_nats_tls_ca(tmp_path: Path) -> None:
    if UNAVAILABLE:
        pytest.skip(UNAVAILABLE)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    tls = ("--tls", "--tlscert", str(cert_file), "--tlskey", str(key_file))
    server = NatsServer(tmp_path / "js", extra=tls).start()
    url = f"tls://127.0.0.1:{server.port}"
    try:
        with pytest.raises(ConfigurationError, match="nats_url"):
            meterstream.MeterClient(exporter="nats", nats_url=url)  # not trusted
        client = meterstream.MeterClient(exporter="nats", nats_url=url, nats_tls_ca=str(ca_file))
        try:
            client.record("api_calls", customer="cus_1", identifier="over-tls")
            assert client.flush(20)
        finally:
            client.shutdown(5)
    finally:
        server.stop()
    server = NatsServer(tmp_path / "js", port=server.port).start()  # same store, plain
    try:
        msgs = read_stream(server.url, "METERSTREAM.events.>")
    finally:
        server.stop()
    assert [m.headers["Nats-Msg-Id"] for m in msgs] == ["over-tls"]
