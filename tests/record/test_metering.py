"""``metering()``: a metered block and its ``Usage``."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

import meterstream
from helpers.recorded import CUS, Boom, events_of, payloads, values

# -- metering() --------------------------------------------------------------------------


def test_metering_unset_value_is_one(memory_client: meterstream.MeterClient) -> None:
    with meterstream.customer(CUS), meterstream.metering("gpu_seconds") as usage:
        assert isinstance(usage, meterstream.Usage)
    assert payloads(memory_client) == [{"stripe_customer_id": CUS, "value": "1"}]


def test_metering_value_set(memory_client: meterstream.MeterClient) -> None:
    with meterstream.customer(CUS), meterstream.metering("gpu_seconds") as usage:
        usage.value = 12.5
    assert values(memory_client) == ["12.5"]


def test_metering_add_starts_from_zero(memory_client: meterstream.MeterClient) -> None:
    with meterstream.customer(CUS), meterstream.metering("gpu_seconds") as usage:
        usage.add(3)
        usage.add(4)
        assert usage.value == 7
    assert values(memory_client) == ["7"]


def test_metering_add_without_amount_counts_one(memory_client: meterstream.MeterClient) -> None:
    with meterstream.customer(CUS), meterstream.metering("items") as usage:
        for _ in range(5):
            usage.add()
    assert values(memory_client) == ["5"]


def failing_block(error: BaseException, on_error: str = "skip") -> None:
    with meterstream.customer(CUS), meterstream.metering("gpu", on_error=on_error) as usage:
        usage.value = 3
        raise error


def test_metering_block_that_raises_records_nothing(
    memory_client: meterstream.MeterClient,
) -> None:
    error = Boom()
    with pytest.raises(Boom) as info:
        failing_block(error)
    assert info.value is error
    assert events_of(memory_client) == []


def test_metering_block_that_raises_records_with_on_error_record(
    memory_client: meterstream.MeterClient,
) -> None:
    error = Boom()
    with pytest.raises(Boom) as info:
        failing_block(error, on_error="record")
    assert info.value is error
    assert values(memory_client) == ["3"]


def test_metering_async_with(memory_client: meterstream.MeterClient) -> None:
    async def main() -> None:
        async with meterstream.customer(CUS), meterstream.metering("gpu_seconds") as usage:
            await asyncio.sleep(0)
            usage.value = Decimal("2.50")

    asyncio.run(main())
    assert values(memory_client) == ["2.5"]


def test_metering_identifier_and_dimensions(memory_client: meterstream.MeterClient) -> None:
    block = meterstream.metering("gpu_seconds", identifier="job_1", dimensions={"gpu": "a100"})
    with meterstream.customer(CUS), block:
        pass
    (event,) = events_of(memory_client)
    assert event["identifier"] == "job_1"
    assert event["payload"] == {"stripe_customer_id": CUS, "value": "1", "gpu": "a100"}


def test_client_metering_uses_that_client() -> None:
    default = meterstream.configure(exporter="memory")
    other = meterstream.MeterClient(exporter="memory")
    try:
        with meterstream.customer(CUS), other.metering("gpu_seconds") as usage:
            usage.value = 2
        assert values(other) == ["2"]
        assert events_of(default) == []
    finally:
        other.shutdown(0)
