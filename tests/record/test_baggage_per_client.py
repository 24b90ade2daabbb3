"""OpenTelemetry baggage settings belong to each client: the last client built no longer wins.

Every key here is given explicitly, so baggage is written whether or not an
OpenTelemetry SDK is installed in this process (tests/integrations/test_otel.py installs one).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from opentelemetry import baggage
from opentelemetry import context as otel_context

import meterstream


@pytest.fixture
def client_settings() -> dict[str, Any]:
    return {"exporter": "memory"}


def customers(client: meterstream.MeterClient) -> list[str]:
    assert client.flush(10)
    return [e["payload"]["stripe_customer_id"] for e in client.exporter.events]  # type: ignore[attr-defined]


def test_each_client_writes_its_own_baggage_key(make_client: Any) -> None:
    first = make_client(otel_baggage_key="first.customer")
    second = make_client(otel_baggage_key="second.customer")
    with first.customer("cus_1"):
        assert baggage.get_baggage("first.customer") == "cus_1"
        assert baggage.get_baggage("second.customer") is None
        with second.customer("cus_2"):
            assert baggage.get_baggage("second.customer") == "cus_2"
            assert baggage.get_baggage("first.customer") == "cus_1"
        assert baggage.get_baggage("second.customer") is None
    assert baggage.get_baggage("first.customer") is None


def test_each_client_reads_its_own_baggage_key(make_client: Any) -> None:
    first = make_client(otel_baggage_key="first.customer", on_missing_customer="drop")
    second = make_client(otel_baggage_key="second.customer", on_missing_customer="drop")
    token = otel_context.attach(baggage.set_baggage("first.customer", "cus_up"))
    try:
        assert first.current_customer() == "cus_up"
        assert second.current_customer() is None
        first.record("calls")
        second.record("calls")
        first.meter("calls")(lambda: None)()
        second.meter("calls")(lambda: None)()
    finally:
        otel_context.detach(token)
    assert customers(first) == ["cus_up", "cus_up"]
    assert customers(second) == []
    assert second.stats()["dropped_missing_customer"] == 2


def test_the_module_customer_writes_the_default_clients_key(make_client: Any) -> None:
    meterstream.configure(exporter="memory", otel_baggage_key="default.customer")
    make_client(otel_baggage_key="other.customer")  # built last: it must not take over
    with meterstream.customer("cus_1"):
        assert baggage.get_baggage("default.customer") == "cus_1"
        assert baggage.get_baggage("other.customer") is None
        assert meterstream.current_customer() == "cus_1"
    token = otel_context.attach(baggage.set_baggage("default.customer", "cus_up"))
    try:
        assert meterstream.current_customer() == "cus_up"
    finally:
        otel_context.detach(token)


def test_a_client_with_baggage_off_leaves_the_others_on(make_client: Any) -> None:
    meterstream.configure(exporter="memory", otel_baggage_key="default.customer")
    off = make_client(otel_baggage_key="")
    with off.customer("cus_1"):
        assert baggage.get_baggage("default.customer") is None
    with meterstream.customer("cus_2"):
        assert baggage.get_baggage("default.customer") == "cus_2"


def test_a_reconfigured_default_client_brings_its_own_key() -> None:
    meterstream.configure(exporter="memory", otel_baggage_key="old.customer")
    meterstream.configure(exporter="memory", otel_baggage_key="new.customer")
    with meterstream.customer("cus_1"):
        assert baggage.get_baggage("new.customer") == "cus_1"
        assert baggage.get_baggage("old.customer") is None


def test_before_there_is_a_default_client_the_module_customer_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the default client will use once built from the environment.
    monkeypatch.setenv("METERSTREAM_OTEL_BAGGAGE_KEY", "env.customer")
    with meterstream.customer("cus_1"):
        assert baggage.get_baggage("env.customer") == "cus_1"
        assert baggage.get_baggage("meterstream.customer_id") is None
    token = otel_context.attach(baggage.set_baggage("env.customer", "cus_up"))
    try:
        assert meterstream.current_customer() == "cus_up"
    finally:
        otel_context.detach(token)


def test_before_there_is_a_default_client_an_empty_key_in_the_environment_turns_baggage_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METERSTREAM_OTEL_BAGGAGE_KEY", "")
    with meterstream.customer("cus_2"):
        assert baggage.get_baggage("env.customer") is None
        assert baggage.get_baggage("meterstream.customer_id") is None


def test_the_environment_is_read_once_and_again_at_configure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METERSTREAM_OTEL_BAGGAGE_KEY", "env.customer")
    with meterstream.customer("cus_1"):
        assert baggage.get_baggage("env.customer") == "cus_1"
    monkeypatch.setenv("METERSTREAM_OTEL_BAGGAGE_KEY", "")  # a setting: read when configured
    with meterstream.customer("cus_1"):
        assert baggage.get_baggage("env.customer") == "cus_1"
    meterstream.configure(exporter="memory")
    with meterstream.customer("cus_1"):
        assert baggage.get_baggage("env.customer") is None


class _WatchedEnviron(MutableMapping[str, str]):
    """``os.environ``, noting every read."""

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        self.environ = environ
        self.reads: list[object] = []

    def __getitem__(self, key: str) -> str:
        self.reads.append(key)
        return self.environ[key]

    def __contains__(self, key: object) -> bool:
        self.reads.append(key)
        return key in self.environ

    def __setitem__(self, key: str, value: str) -> None:
        self.environ[key] = value

    def __delitem__(self, key: str) -> None:
        del self.environ[key]

    def __iter__(self) -> Iterator[str]:
        self.reads.append("<iter>")
        return iter(self.environ)

    def __len__(self) -> int:
        return len(self.environ)


@pytest.mark.parametrize("whose", ["before a default client", "the default client", "a client"])
def test_entering_a_customer_block_reads_no_environment_variable(
    monkeypatch: pytest.MonkeyPatch, make_client: Any, whose: str
) -> None:
    if whose == "the default client":
        meterstream.configure(exporter="memory")
    client = make_client()
    block = client.customer if whose == "a client" else meterstream.customer
    current = client.current_customer if whose == "a client" else meterstream.current_customer
    with block("cus_1"):  # what a block and a lookup need is read by now
        current()
    current()
    watched = _WatchedEnviron(os.environ)
    monkeypatch.setattr(os, "environ", watched)
    for _ in range(3):
        with block("cus_1"):
            current()
        current()
    assert watched.reads == []
