"""NATS down after start: events wait in the buffer; reconnection is automatic."""

from __future__ import annotations

import os

import pytest

import meterstream
from helpers.fleet import read_stream
from helpers.nats_server import NatsServer


def test_events_recorded_while_nats_is_down_are_published_after_it_returns(
    nats_server: NatsServer,
) -> None:
    client = meterstream.MeterClient(
        exporter="nats",
        nats_url=nats_server.url,
        request_timeout=1.0,
        retry_initial_delay=0.05,
        retry_max_delay=0.5,
    )
    try:
        client.record("api_calls", customer="cus_1", identifier="before")
        assert client.flush(20)
        nats_server.kill()
        for i in range(50):
            client.record("api_calls", customer="cus_1", identifier=f"during-{i}")
        assert not client.flush(1.5)  # nowhere to go: they wait, none is dropped
        assert client.stats()["dropped"] == 0
        nats_server.start()  # same port, same store
        assert client.flush(60)
        stats = client.stats()
    finally:
        client.shutdown(5)
    assert stats["failed"] == 0
    msgs = read_stream(nats_server.url, "METERSTREAM.events.>")
    idents = sorted(m.headers["Nats-Msg-Id"] for m in msgs)
    assert idents == sorted(["before", *(f"during-{i}" for i in range(50))])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_publishes_on_its_own_connection(nats_server: NatsServer) -> None:
    client = meterstream.MeterClient(exporter="nats", nats_url=nats_server.url)
    try:
        client.record("api_calls", customer="cus_1", identifier="parent-0")
        assert client.flush(20)
        pid = os.fork()
        if pid == 0:  # the child: record, flush, report by exit code
            code = 1
            try:
                client.record("api_calls", customer="cus_1", identifier="child-0")
                code = 0 if client.flush(30) else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        client.record("api_calls", customer="cus_1", identifier="parent-1")
        assert client.flush(20)
    finally:
        client.shutdown(5)
    msgs = read_stream(nats_server.url, "METERSTREAM.events.>")
    assert sorted(m.headers["Nats-Msg-Id"] for m in msgs) == ["child-0", "parent-0", "parent-1"]
