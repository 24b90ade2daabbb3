"""``MeterClient`` has the whole module surface as methods (SPEC §3, last paragraph)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator

import pytest

import meterstream

#: Module functions that manage the default client itself, or act on every
#: client of the process (a signal handler): no method makes sense.
ABOUT_THE_DEFAULT_CLIENT = {"configure", "get_client", "drain_on_sigterm"}


@pytest.fixture
def client() -> Iterator[meterstream.MeterClient]:
    c = meterstream.MeterClient(exporter="memory")
    yield c
    c.shutdown(0)


def _module_functions() -> list[str]:
    names = []
    for name in meterstream.__all__:
        obj = getattr(meterstream, name)
        if name.startswith("_") or name[0].isupper():
            continue  # classes, exceptions and __version__
        if callable(obj) and name not in ABOUT_THE_DEFAULT_CLIENT:
            names.append(name)
    return names


def test_the_public_module_functions_are_the_expected_ones() -> None:
    assert set(_module_functions()) == {
        "bind_context",
        "cancel",
        "current_customer",
        "customer",
        "flush",
        "handle_webhook",
        "meter",
        "metering",
        "record",
        "shutdown",
        "stats",
    }


@pytest.mark.parametrize("name", _module_functions())
def test_every_public_module_function_has_its_client_method(name: str) -> None:
    method = getattr(meterstream.MeterClient, name, None)
    assert method is not None, f"MeterClient has no {name}()"
    assert callable(method)
    # A module function may take the client to act on (handle_webhook's
    # client=): the method is that client.
    module_params = [
        p for p in inspect.signature(getattr(meterstream, name)).parameters if p != "client"
    ]
    method_params = list(inspect.signature(method).parameters)[1:]  # without self
    assert method_params == module_params


def test_client_customer_sets_the_context_every_client_shares(
    client: meterstream.MeterClient,
) -> None:
    other = meterstream.MeterClient(exporter="memory")
    try:
        with client.customer("cus_shared") as entered:
            assert entered == "cus_shared"
            assert client.current_customer() == "cus_shared"
            assert other.current_customer() == "cus_shared"
            assert meterstream.current_customer() == "cus_shared"
            other.record("api_calls")
        assert client.current_customer() is None
        assert other.flush(10)
        assert [e["payload"]["stripe_customer_id"] for e in other.exporter.events] == [  # type: ignore[attr-defined]
            "cus_shared"
        ]
    finally:
        other.shutdown(0)


def test_module_customer_is_seen_by_a_client(client: meterstream.MeterClient) -> None:
    with meterstream.customer("cus_module"):
        assert client.current_customer() == "cus_module"
    assert client.current_customer() is None


def test_client_customer_works_with_async_with(client: meterstream.MeterClient) -> None:
    async def main() -> str | None:
        async with client.customer("cus_async"):
            return client.current_customer()

    assert asyncio.run(main()) == "cus_async"


def test_client_bind_context_carries_the_customer(client: meterstream.MeterClient) -> None:
    with client.customer("cus_bound"):
        bound = client.bind_context(client.current_customer)
    assert bound() == "cus_bound"
