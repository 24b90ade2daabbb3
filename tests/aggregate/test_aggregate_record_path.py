"""The folded record path checks a use exactly as the unfolded one does.

A folded use makes no identifier and reads no clock of its own, and a
customer id already checked is not checked again: none of that may let a
bad use into a sum.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Callable

import pytest

import meterstream
from meterstream.errors import InvalidEventError
from meterstream.testing import MeterEvents

Make = Callable[..., meterstream.MeterClient]


@pytest.fixture
def make() -> Iterator[Make]:
    clients: list[meterstream.MeterClient] = []

    def make(**settings: Any) -> meterstream.MeterClient:
        settings.setdefault("exporter", "memory")
        settings.setdefault("aggregate", {"llm_tokens": "sum"})
        client = meterstream.MeterClient(**settings)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(1)


class Shouty(str):
    """A str subclass: checked as the plain string it holds."""

    def strip(self, *args: Any) -> str:  # type: ignore[override]
        raise AssertionError("a str subclass's own methods must not be called")


BAD_USES: list[tuple[dict[str, Any], str]] = [
    ({"value": True}, "value"),
    ({"value": float("nan")}, "value"),
    ({"value": 10**15 + 1}, "value"),
    ({"value": "12 apples"}, "value"),
    ({"customer": " cus_ok "}, "customer"),
    ({"customer": "cus_\n"}, "customer"),
    ({"customer": 42}, "customer"),
    ({"dimensions": {"stripe_customer_id": "cus_other"}}, "dimensions"),
    ({"dimensions": {"region": 3}}, "dimensions"),
    ({"identifier": ""}, "identifier"),
    ({"timestamp": "yesterday"}, "timestamp"),
]


@pytest.mark.parametrize(("bad", "field"), BAD_USES)
def test_a_bad_use_is_refused_naming_its_field_and_never_folded(
    make: Make, bad: dict[str, Any], field: str
) -> None:
    client = make(raise_errors=True)
    # The customer id is known good first: a later bad use must still be checked.
    client.record("llm_tokens", 5, customer="cus_ok")
    use: dict[str, Any] = {"value": 1, "customer": "cus_ok", **bad}
    with pytest.raises(InvalidEventError) as raised:
        client.record("llm_tokens", use.pop("value"), **use)
    assert raised.value.field.startswith(field)
    assert client.stats()["aggregated_uses"] == 1

    quiet = make(raise_errors=False)
    quiet.record("llm_tokens", 5, customer="cus_ok")
    use = {"value": 1, "customer": "cus_ok", **bad}
    quiet.record("llm_tokens", use.pop("value"), **use)
    assert quiet.flush(10)
    stats = quiet.stats()
    assert stats["dropped_invalid"] == 1
    assert stats["aggregated_uses"] == 1
    events = MeterEvents(quiet).events
    assert [e["payload"]["value"] for e in events] == ["5"]


def test_a_str_subclass_customer_is_folded_as_its_plain_string(make: Make) -> None:
    client = make(raise_errors=True)
    client.record("llm_tokens", 2, customer=Shouty("cus_sub"))
    client.record("llm_tokens", 3, customer="cus_sub")
    events = MeterEvents(client).events
    assert [(e["payload"]["stripe_customer_id"], e["payload"]["value"]) for e in events] == [
        ("cus_sub", "5")
    ]
    assert type(events[0]["payload"]["stripe_customer_id"]) is str


def test_a_use_with_its_own_identifier_or_timestamp_is_not_folded(make: Make) -> None:
    client = make(raise_errors=True)
    client.record("llm_tokens", 2, customer="cus_a", identifier="req-1")
    client.record("llm_tokens", 3, customer="cus_a", timestamp=time.time() - 60)
    client.record("llm_tokens", 4, customer="cus_a")
    events = MeterEvents(client).events
    ids = {e["identifier"]: e["payload"]["value"] for e in events}
    assert ids["req-1"] == "2"
    assert sorted(ids.values()) == ["2", "3", "4"]
    assert client.stats()["aggregated_uses"] == 1


def test_folded_uses_through_every_entry_point_are_watched_and_summed(make: Make) -> None:
    client = make(raise_errors=True)
    watched = MeterEvents(client)

    @client.meter("llm_tokens", value=lambda call: 7)
    def valued() -> None:
        return None

    @client.meter("llm_tokens")
    def constant() -> None:
        return None

    with meterstream.customer("cus_w"):
        valued()
        constant()
        with client.metering("llm_tokens") as usage:
            usage.value = Decimal("0.5")
        client.record("llm_tokens", 1.25)
    assert [(u.customer, u.value, u.identifier) for u in watched.uses] == [
        ("cus_w", 7, None),
        ("cus_w", 1, None),
        ("cus_w", Decimal("0.5"), None),
        ("cus_w", 1.25, None),
    ]
    assert all(isinstance(u.timestamp, float) for u in watched.uses)
    assert watched.total("llm_tokens", "cus_w") == Decimal("9.75")
    assert len(watched.events) == 1
    assert client.stats()["aggregated_uses"] == 4
