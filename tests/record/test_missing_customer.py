"""No customer: ``on_missing_customer`` says warn, drop or raise, and when."""

from __future__ import annotations

import asyncio
import logging

import pytest

import meterstream
from helpers.recorded import events_of

# -- missing customer --------------------------------------------------------------------


def test_missing_customer_warns_once_and_counts_by_default(
    memory_client: meterstream.MeterClient, caplog: pytest.LogCaptureFixture
) -> None:
    @meterstream.meter("calls")
    def fn() -> str:
        return "still runs"

    with caplog.at_level(logging.WARNING, logger="meterstream"):
        for _ in range(5):
            assert fn() == "still runs"
    assert events_of(memory_client) == []
    assert memory_client.stats()["dropped_missing_customer"] == 5
    warnings = [r for r in caplog.records if r.name == "meterstream"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "no customer" in warnings[0].getMessage()


def test_missing_customer_drop_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    client = meterstream.configure(exporter="memory", on_missing_customer="drop")
    with caplog.at_level(logging.DEBUG, logger="meterstream"):
        meterstream.record("calls")
    assert events_of(client) == []
    assert client.stats()["dropped_missing_customer"] == 1
    assert [r for r in caplog.records if r.name == "meterstream"] == []


def test_missing_customer_raise_from_record_even_without_raise_errors() -> None:
    client = meterstream.configure(
        exporter="memory", on_missing_customer="raise", raise_errors=False
    )
    with pytest.raises(meterstream.MissingCustomerError) as info:
        meterstream.record("calls")
    assert info.value.field == "customer"
    assert "calls" in str(info.value)
    assert events_of(client) == []


def test_missing_customer_raise_when_the_customer_callable_returns_none() -> None:
    meterstream.configure(exporter="memory", on_missing_customer="raise", raise_errors=False)

    @meterstream.meter("calls", customer=lambda call: None)
    def fn() -> str:
        return "ran"

    with pytest.raises(meterstream.MissingCustomerError):
        fn()


def test_missing_customer_raise_with_raise_errors_raises_missing_customer_error() -> None:
    client = meterstream.configure(
        exporter="memory", on_missing_customer="raise", raise_errors=True
    )
    with pytest.raises(meterstream.MissingCustomerError):
        meterstream.record("calls")
    assert client.stats()["recorded"] == 0


def test_missing_customer_raise_happens_before_the_function_body() -> None:
    meterstream.configure(exporter="memory", on_missing_customer="raise")
    ran: list[bool] = []

    @meterstream.meter("calls")
    def fn() -> None:
        ran.append(True)

    with pytest.raises(meterstream.MissingCustomerError):
        fn()
    assert ran == []


def test_missing_customer_raise_happens_before_an_async_body() -> None:
    meterstream.configure(exporter="memory", on_missing_customer="raise")
    ran: list[bool] = []

    @meterstream.meter("calls", value=lambda call: 2)
    async def fn() -> None:
        ran.append(True)

    with pytest.raises(meterstream.MissingCustomerError):
        asyncio.run(fn())
    assert ran == []


def test_missing_customer_raise_happens_before_a_metering_block() -> None:
    meterstream.configure(exporter="memory", on_missing_customer="raise")
    ran: list[bool] = []
    with pytest.raises(meterstream.MissingCustomerError), meterstream.metering("calls"):
        ran.append(True)
    assert ran == []


def test_empty_customer_block_means_no_customer() -> None:
    client = meterstream.configure(exporter="memory", on_missing_customer="drop")
    with meterstream.customer("cus_outer"), meterstream.customer(""):
        meterstream.record("calls")
    assert events_of(client) == []
    assert client.stats()["dropped_missing_customer"] == 1
