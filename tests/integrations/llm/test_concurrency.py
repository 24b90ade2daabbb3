"""100 concurrent streams for 100 customers: each billed exactly its own tokens, at the emulator."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import meterstream
from helpers.llm import anthropic_client, openai_client
from meterstream.emulator import Emulator
from meterstream.integrations import anthropic as metered_anthropic
from meterstream.integrations import openai as metered_openai
from meterstream.testing.llm import FakeModelServer

STREAMS = 100


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"auto_create_meters": True}


def test_concurrent_streams_bill_each_customer_exactly_its_tokens(
    fake: FakeModelServer, emulator: Emulator
) -> None:
    meter = meterstream.configure(
        api_key="sk_test_llm",
        api_base=emulator.url,
        stream_base=emulator.url,
        flush_interval=3600,
    )

    async def main() -> None:
        oa = metered_openai.instrument(openai_client(fake, True))
        an = metered_anthropic.instrument(anthropic_client(fake, True))

        async def one(i: int) -> None:
            customer = f"cus_{i:03d}"
            prompt = " ".join(["word"] * (i + 1))  # a different input count per customer
            with meterstream.customer(customer):
                if i % 2:
                    stream: Any = await oa.chat.completions.create(
                        model="gpt-4o-mini",
                        messages=[{"role": "user", "content": prompt}],
                        stream=True,
                        user=customer,
                    )
                else:
                    stream = await an.messages.create(
                        model="claude-sonnet-4-5",
                        max_tokens=100,
                        messages=[{"role": "user", "content": prompt}],
                        stream=True,
                        metadata={"user_id": customer},
                    )
            await asyncio.sleep(0)  # consumed outside the customer block, interleaved
            async for _ in stream:
                await asyncio.sleep(0)

        async with oa, an:
            await asyncio.gather(*(one(i) for i in range(STREAMS)))

    asyncio.run(main())
    assert meter.flush(30)

    reported: dict[tuple[str, str], int] = {}
    for call in fake.calls:
        customer = call.body.get("user") or call.body["metadata"]["user_id"]
        for token_type, count in call.tokens.items():
            key = (customer, token_type)
            reported[key] = reported.get(key, 0) + count
    billed: dict[tuple[str, str], int] = {}
    for event in emulator.state.events("token-billing-tokens"):
        key = (event["customer"], event["payload"]["token_type"])
        billed[key] = billed.get(key, 0) + int(event["value"])
    assert len(fake.calls) == STREAMS
    assert len({c for c, _ in reported}) == STREAMS
    assert billed == reported
    assert meter.stats()["dropped"] == 0
