"""Anthropic: Messages created, streamed and through stream(), sync and async, early stops."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import pytest
from anthropic.types import Message

import meterstream
from helpers.llm import ONE_WORD, anthropic_client, by_type, tokens
from meterstream.integrations.anthropic import instrument
from meterstream.testing.llm import FakeModelServer

HI = [{"role": "user", "content": "hi"}]
ARGS: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": HI}


def run(fake: FakeModelServer, is_async: bool, use: Any, **options: Any) -> Any:
    """``use(client)`` on a new instrumented client; for async clients ``use`` is awaited."""
    client = instrument(anthropic_client(fake, is_async), **options)
    if not is_async:
        return use(client)

    async def main() -> Any:
        try:
            return await use(client)
        finally:
            await client.close()

    return asyncio.run(main())


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_message_records_each_token_type_without_overlap(
    fake: FakeModelServer, meter: meterstream.MeterClient, is_async: bool
) -> None:
    with meterstream.customer("cus_1"):
        message = run(fake, is_async, lambda c: c.messages.create(**ARGS))
    assert type(message) is Message
    assert message.usage.output_tokens == 5 + 2  # the SDK's own numbers, unchanged
    assert sorted(tokens(meter)) == sorted(
        ("cus_1", "anthropic/claude-sonnet-4-5", t, str(v)) for t, v in ONE_WORD.items()
    )


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_raw_stream_is_metered_from_message_start_and_message_delta(
    fake: FakeModelServer, meter: meterstream.MeterClient, is_async: bool
) -> None:
    async def consume(c: Any) -> list[Any]:
        return [e async for e in await c.messages.create(**ARGS, stream=True)]

    def use(c: Any) -> Any:
        return consume(c) if is_async else list(c.messages.create(**ARGS, stream=True))

    with meterstream.customer("cus_1"):
        events = run(fake, is_async, use)
    assert (events[0].type, events[-2].type, events[-1].type) == (
        "message_start",
        "message_delta",
        "message_stop",
    )
    assert by_type(meter) == ONE_WORD


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_the_stream_helper_is_metered(
    fake: FakeModelServer, meter: meterstream.MeterClient, is_async: bool
) -> None:
    async def helper_async(c: Any) -> Any:
        async with c.messages.stream(**ARGS) as stream:
            return await stream.get_final_message()

    def helper(c: Any) -> Any:
        with c.messages.stream(**ARGS) as stream:
            return stream.get_final_message()

    with meterstream.customer("cus_1"):
        final = run(fake, is_async, helper_async if is_async else helper)
    assert final.usage.output_tokens == 7
    assert by_type(meter) == ONE_WORD


def test_beta_messages_are_metered(fake: FakeModelServer, meter: meterstream.MeterClient) -> None:
    with meterstream.customer("cus_1"):
        run(fake, False, lambda c: c.beta.messages.create(**ARGS))
    assert by_type(meter) == ONE_WORD


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_stream_stopped_after_message_start_meters_what_it_reported_once(
    fake: FakeModelServer, meter: meterstream.MeterClient, is_async: bool
) -> None:
    async def stop_async(c: Any) -> None:
        async with c.messages.stream(**ARGS) as stream:
            async for _ in stream:
                break

    def stop(c: Any) -> None:
        stream = c.messages.create(**ARGS, stream=True)
        assert next(iter(stream)).type == "message_start"
        stream.close()
        stream.close()

    with meterstream.customer("cus_1"):
        run(fake, is_async, stop_async if is_async else stop)
    # message_start's input and cache counts, and its interim output count (1)
    assert by_type(meter) == {"input": 1, "cached_input": 3, "cache_write": 1, "output": 1}


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_stream_the_server_cuts_short_meters_what_was_reported(
    fake: FakeModelServer, meter: meterstream.MeterClient, is_async: bool
) -> None:
    cut = {"x-fake-stop-after": "4"}

    async def consume(c: Any) -> int:
        return len(
            [e async for e in await c.messages.create(**ARGS, stream=True, extra_headers=cut)]
        )

    def use(c: Any) -> Any:
        if is_async:
            return consume(c)
        return len(list(c.messages.create(**ARGS, stream=True, extra_headers=cut)))

    with meterstream.customer("cus_1"):
        assert run(fake, is_async, use) == 3  # the ping is not an event the SDK yields
    assert (
        by_type(meter)
        == fake.calls[0].tokens
        == {
            "input": 1,
            "cached_input": 3,
            "cache_write": 1,
            "output": 1,
        }
    )


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_mid_stream_error_passes_unchanged_and_meters_what_was_reported(
    fake: FakeModelServer, meter: meterstream.MeterClient, is_async: bool
) -> None:
    fail = {"x-fake-error-after": "5"}

    async def consume(c: Any) -> None:
        async for _ in await c.messages.create(**ARGS, stream=True, extra_headers=fail):
            pass

    def use(c: Any) -> Any:
        if is_async:
            return consume(c)
        for _ in c.messages.create(**ARGS, stream=True, extra_headers=fail):
            pass

    with meterstream.customer("cus_1"), pytest.raises(anthropic.APIStatusError) as raised:
        run(fake, is_async, use)
    assert "fake error" in str(raised.value)
    assert by_type(meter) == {"input": 1, "cached_input": 3, "cache_write": 1, "output": 1}


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_missing_usage_block_records_nothing(
    fake: FakeModelServer, meter: meterstream.MeterClient, is_async: bool
) -> None:
    none = {"x-fake-no-usage": "1"}
    with meterstream.customer("cus_1"):
        message = run(fake, is_async, lambda c: c.messages.create(**ARGS, extra_headers=none))
    assert message.usage is None
    assert tokens(meter) == []


def test_one_event_name_per_token_type_folds_the_types_it_does_not_name(
    fake: FakeModelServer, meter: meterstream.MeterClient
) -> None:
    names = {"input": "llm_input", "cached_input": "llm_cached", "output": "llm_output"}
    with meterstream.customer("cus_1"):
        run(fake, False, lambda c: c.messages.create(**ARGS), event_name=names)
    assert meter.flush(5)
    got = {
        e["event_name"]: (e["payload"]["token_type"], e["payload"]["value"])
        for e in meter.exporter.events  # type: ignore[attr-defined]
    }
    # cache_write counts as input, reasoning as output: the sum is unchanged
    assert got == {
        "llm_input": ("input", "2"),
        "llm_cached": ("cached_input", "3"),
        "llm_output": ("output", "7"),
    }


def test_a_mapping_without_input_and_output_is_refused(fake: FakeModelServer) -> None:
    with pytest.raises(meterstream.ConfigurationError, match="'output'"):
        instrument(anthropic_client(fake), event_name={"input": "llm_input"})
    with pytest.raises(meterstream.ConfigurationError, match="'thinking'"):
        instrument(
            anthropic_client(fake), event_name={"input": "a", "output": "b", "thinking": "c"}
        )
    with pytest.raises(meterstream.ConfigurationError, match="anthropic.Anthropic"):
        instrument(object())
