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


def test_an_empty_customer_block_is_an_invalid_customer_not_a_missing_one() -> None:
    client = meterstream.configure(exporter="memory", on_missing_customer="drop")
    with meterstream.customer("cus_outer"), meterstream.customer(""):
        meterstream.record("calls")
    assert events_of(client) == []
    assert client.stats()["dropped_invalid"] == 1
    assert client.stats()["dropped_missing_customer"] == 0


# -- an empty customer is invalid, not missing (issue 24) ---------------------------------------


@pytest.mark.parametrize("empty", ["", " ", "\t"])
def test_an_empty_or_blank_customer_raises_naming_it_with_raise_errors(empty: str) -> None:
    client = meterstream.configure(exporter="memory", raise_errors=True)
    for record in (
        lambda: meterstream.record("calls", customer=empty),
        lambda: client.record("calls", customer=empty),
    ):
        with (
            meterstream.customer("cus_outer"),
            pytest.raises(meterstream.InvalidEventError) as info,
        ):
            record()
        assert info.value.field == "customer"
        assert info.value.value == empty
        assert f"(got {empty!r})" in str(info.value)
    assert events_of(client) == []


def test_an_empty_customer_is_dropped_as_invalid_and_logged_with_what_was_passed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = meterstream.configure(exporter="memory", on_missing_customer="warn")
    with caplog.at_level(logging.WARNING, logger="meterstream"):
        meterstream.record("calls", customer="")
    assert events_of(client) == []
    stats = client.stats()
    assert stats["dropped_invalid"] == 1 and stats["dropped_missing_customer"] == 0
    messages = [r.getMessage() for r in caplog.records if r.name == "meterstream"]
    assert any("customer" in m and "(got '')" in m for m in messages), messages
    assert not any("(got None)" in m for m in messages), messages


def test_a_customer_callable_returning_an_empty_string_is_invalid_not_the_context() -> None:
    client = meterstream.configure(exporter="memory")

    @meterstream.meter("calls", customer=lambda call: "")
    def handler() -> str:
        return "still runs"

    with meterstream.customer("cus_outer"):
        assert handler() == "still runs"
    assert events_of(client) == []
    assert client.stats()["dropped_invalid"] == 1


def test_a_metering_block_with_an_empty_customer_is_invalid() -> None:
    client = meterstream.configure(exporter="memory", raise_errors=True)
    with (
        pytest.raises(meterstream.InvalidEventError) as info,
        meterstream.metering("calls", customer=""),
    ):
        pass
    assert info.value.field == "customer"
    assert events_of(client) == []
