"""What the token metering tests share: the real SDKs pointed at the fake model server."""

from __future__ import annotations

from typing import Any

import meterstream
from meterstream.testing.llm import FakeModelServer

#: Sync SDK clients made by a test, closed after it by the conftest's fixture.
SYNC_CLIENTS: list[Any] = []


def openai_client(fake: FakeModelServer, is_async: bool = False) -> Any:
    import openai

    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    client = cls(base_url=fake.openai_base_url, api_key="sk-test", max_retries=0)
    if not is_async:
        SYNC_CLIENTS.append(client)
    return client


def anthropic_client(fake: FakeModelServer, is_async: bool = False) -> Any:
    import anthropic

    cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    client = cls(base_url=fake.anthropic_base_url, api_key="sk-ant-test", max_retries=0)
    if not is_async:
        SYNC_CLIENTS.append(client)
    return client


def tokens(client: meterstream.MeterClient) -> list[tuple[str, str, str, str]]:
    """(customer, model, token type, value) of every event recorded, after a flush."""
    assert client.flush(5)
    return [
        (
            e["payload"]["stripe_customer_id"],
            e["payload"]["model"],
            e["payload"]["token_type"],
            e["payload"]["value"],
        )
        for e in client.exporter.events  # type: ignore[attr-defined]
    ]


def by_type(client: meterstream.MeterClient) -> dict[str, int]:
    """Token type -> total recorded."""
    totals: dict[str, int] = {}
    for _, _, token_type, value in tokens(client):
        totals[token_type] = totals.get(token_type, 0) + int(value)
    return totals


#: What the fake server reports for a one-word prompt with the fixture's settings.
ONE_WORD = {"input": 1, "cached_input": 3, "cache_write": 1, "output": 5, "reasoning": 2}
