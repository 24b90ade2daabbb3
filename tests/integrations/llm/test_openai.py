"""OpenAI: every billable call kind, sync and async, streamed or not, against the fake server."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

import meterstream
from helpers.llm import ONE_WORD, by_type, openai_client, tokens
from meterstream.integrations.openai import instrument
from meterstream.testing.llm import FakeModelServer

HI = [{"role": "user", "content": "hi"}]


def chat_stream(client: Any, is_async: bool, **kwargs: Any) -> list[Any]:
    """Every chunk a caller iterating the stream sees (*client*: a client or a factory)."""
    if callable(client):
        client = client()
    if not is_async:
        return list(
            client.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True, **kwargs)
        )

    async def run() -> list[Any]:
        try:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=HI, stream=True, **kwargs
            )
            return [chunk async for chunk in stream]
        finally:
            await client.close()

    return asyncio.run(run())


def call(is_async: bool, new: Any, make: Any) -> Any:
    """``make(new())``'s result, awaited for an async client (each loop its own client)."""
    if not is_async:
        return make(new())

    async def run() -> Any:
        client = new()
        try:
            return await make(client)
        finally:
            await client.close()

    return asyncio.run(run())


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_chat_completion_records_each_token_type_without_overlap(
    fake: FakeModelServer, meter: meterstream.MeterClient, is_async: bool
) -> None:
    def new() -> Any:
        return instrument(openai_client(fake, is_async))

    with meterstream.customer("cus_1"):
        result = call(
            is_async, new, lambda c: c.chat.completions.create(model="gpt-4o-mini", messages=HI)
        )
    assert type(result) is ChatCompletion
    assert result.usage.prompt_tokens == 1 + 3 + 1  # the SDK's own numbers, unchanged
    assert sorted(tokens(meter)) == sorted(
        ("cus_1", "openai/gpt-4o-mini", t, str(v)) for t, v in ONE_WORD.items()
    )
    assert sum(by_type(meter).values()) == result.usage.total_tokens


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_chat_stream_gets_include_usage_and_the_caller_never_sees_the_extra_chunk(
    fake: FakeModelServer, meter: meterstream.MeterClient, is_async: bool
) -> None:
    plain = chat_stream(openai_client(fake, is_async), is_async)
    metered = chat_stream(instrument(openai_client(fake, is_async)), is_async)
    assert [c.model_dump(exclude_unset=True, exclude={"usage"}) for c in metered] == [
        c.model_dump(exclude_unset=True) for c in plain
    ]
    assert all(c.choices for c in metered) and all(c.usage is None for c in metered)
    assert "stream_options" not in fake.calls[0].body
    assert fake.calls[1].body["stream_options"] == {"include_usage": True}
    with meterstream.customer("cus_1"):
        chat_stream(instrument(openai_client(fake, is_async)), is_async)
    assert by_type(meter) == ONE_WORD


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_caller_that_asked_for_usage_gets_its_usage_chunk(
    fake: FakeModelServer, meter: meterstream.MeterClient, is_async: bool
) -> None:
    client = instrument(openai_client(fake, is_async))
    with meterstream.customer("cus_1"):
        chunks = chat_stream(client, is_async, stream_options={"include_usage": True})
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5 + 2
    assert by_type(meter) == ONE_WORD


def test_the_chat_stream_helper_is_metered(
    fake: FakeModelServer, meter: meterstream.MeterClient
) -> None:
    client = instrument(openai_client(fake))
    with (
        meterstream.customer("cus_1"),
        client.chat.completions.stream(model="gpt-4o", messages=HI) as stream,
    ):
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Hello from the fake model "
    assert final.usage is None  # as without metering: the caller did not ask for usage
    assert by_type(meter) == ONE_WORD


def test_async_chat_stream_helper_is_metered(
    fake: FakeModelServer, meter: meterstream.MeterClient
) -> None:
    client = instrument(openai_client(fake, True))

    async def run() -> Any:
        with meterstream.customer("cus_1"):
            async with client, client.chat.completions.stream(model="gpt-4o", messages=HI) as s:
                return await s.get_final_completion()

    assert asyncio.run(run()).choices[0].message.content.startswith("Hello")
    assert by_type(meter) == ONE_WORD


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_responses_are_metered_plain_and_streamed(
    fake: FakeModelServer, meter: meterstream.MeterClient, is_async: bool
) -> None:
    def new() -> Any:
        return instrument(openai_client(fake, is_async))

    client = new()
    with meterstream.customer("cus_1"):
        result = call(is_async, new, lambda c: c.responses.create(model="gpt-5", input="hi"))
        assert type(result) is Response
        assert by_type(meter) == ONE_WORD
        meter.exporter.clear()  # type: ignore[attr-defined]

        async def consume() -> list[Any]:
            async with client:
                stream = await client.responses.create(model="gpt-5", input="hi", stream=True)
                return [e async for e in stream]

        if is_async:
            events = asyncio.run(consume())
        else:
            events = list(client.responses.create(model="gpt-5", input="hi", stream=True))
    assert events[-1].type == "response.completed"
    assert tokens(meter)[0][1] == "openai/gpt-5"
    assert by_type(meter) == ONE_WORD


def test_the_responses_stream_helper_is_metered(
    fake: FakeModelServer, meter: meterstream.MeterClient
) -> None:
    client = instrument(openai_client(fake))
    with (
        meterstream.customer("cus_1"),
        client.responses.stream(model="gpt-5", input="hi") as stream,
    ):
        assert stream.get_final_response().usage.output_tokens == 5 + 2
    assert by_type(meter) == ONE_WORD


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_embeddings_record_input_tokens(
    fake: FakeModelServer, meter: meterstream.MeterClient, is_async: bool
) -> None:
    def new() -> Any:
        return instrument(openai_client(fake, is_async))

    with meterstream.customer("cus_1"):
        result = call(
            is_async,
            new,
            lambda c: c.embeddings.create(model="text-embedding-3-small", input="red shoes"),
        )
    assert type(result) is CreateEmbeddingResponse
    assert result.data[0].embedding == [0.25, 0.5, 0.75]
    assert tokens(meter) == [("cus_1", "openai/text-embedding-3-small", "input", "2")]


def test_parse_is_metered(fake: FakeModelServer, meter: meterstream.MeterClient) -> None:
    client = instrument(openai_client(fake))
    with meterstream.customer("cus_1"):
        client.chat.completions.parse(model="gpt-4o", messages=HI)
        client.responses.parse(model="gpt-5", input="hi")
    assert by_type(meter) == {t: 2 * v for t, v in ONE_WORD.items()}


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_stream_stopped_early_meters_nothing_openai_had_not_reported_and_only_once(
    fake: FakeModelServer, meter: meterstream.MeterClient, is_async: bool
) -> None:
    client = instrument(openai_client(fake, is_async))

    async def stop_async() -> None:
        async with client:
            stream = await client.chat.completions.create(model="m", messages=HI, stream=True)
            async for _ in stream:
                break
            await stream.close()

    with meterstream.customer("cus_1"):
        if is_async:
            asyncio.run(stop_async())
        else:
            stream = client.chat.completions.create(model="m", messages=HI, stream=True)
            next(iter(stream))
            stream.close()
        assert tokens(meter) == []  # OpenAI's usage comes last: nothing was reported yet
        chat_stream(
            lambda: instrument(openai_client(fake, is_async)), is_async
        )  # read to the end, then closed by the SDK: once
    assert by_type(meter) == ONE_WORD


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_mid_stream_error_passes_unchanged(
    fake: FakeModelServer, meter: meterstream.MeterClient, is_async: bool
) -> None:
    client = instrument(openai_client(fake, is_async))
    with meterstream.customer("cus_1"), pytest.raises(openai.APIError) as raised:
        chat_stream(client, is_async, extra_headers={"x-fake-error-after": "3"})
    assert type(raised.value) is openai.APIError and "fake error" in str(raised.value)
    assert tokens(meter) == []


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_missing_usage_block_records_nothing_and_the_call_succeeds(
    fake: FakeModelServer, meter: meterstream.MeterClient, is_async: bool
) -> None:
    def new() -> Any:
        return instrument(openai_client(fake, is_async))

    no_usage = {"x-fake-no-usage": "1"}
    with meterstream.customer("cus_1"):
        result = call(
            is_async,
            new,
            lambda c: c.chat.completions.create(model="m", messages=HI, extra_headers=no_usage),
        )
        assert result.usage is None
        assert len(chat_stream(new, is_async, extra_headers=no_usage)) == 7
    assert tokens(meter) == []


def test_an_http_error_passes_unchanged_and_records_nothing(
    fake: FakeModelServer, meter: meterstream.MeterClient
) -> None:
    client = instrument(openai_client(fake))
    with meterstream.customer("cus_1"), pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="m", messages=HI, extra_headers={"x-fake-status": "429"}
        )
    assert tokens(meter) == []


def test_copies_are_metered_and_instrumenting_twice_bills_once(
    fake: FakeModelServer, meter: meterstream.MeterClient
) -> None:
    client = instrument(instrument(openai_client(fake)))
    assert isinstance(client, openai.OpenAI)
    with meterstream.customer("cus_1"):
        client.with_options(timeout=30).chat.completions.create(model="m", messages=HI)
        client.chat.completions.create(model="m", messages=HI)
    assert by_type(meter) == {t: 2 * v for t, v in ONE_WORD.items()}


def test_the_customer_can_come_from_the_request(
    fake: FakeModelServer, meter: meterstream.MeterClient
) -> None:
    client = instrument(openai_client(fake), customer=lambda body: body["user"])
    client.chat.completions.create(model="m", messages=HI, user="cus_from_body")
    assert {c for c, *_ in tokens(meter)} == {"cus_from_body"}


def test_a_customer_function_that_raises_never_breaks_the_call(
    fake: FakeModelServer, meter: meterstream.MeterClient
) -> None:
    def broken(body: Any) -> str:
        raise KeyError("user")

    client = instrument(openai_client(fake), customer=broken)
    assert client.chat.completions.create(model="m", messages=HI).usage.total_tokens == 12
    assert tokens(meter) == []


def test_no_customer_with_on_missing_customer_raise_fails_before_the_request(
    fake: FakeModelServer,
) -> None:
    meterstream.configure(exporter="memory", on_missing_customer="raise")
    client = instrument(openai_client(fake))
    with pytest.raises(meterstream.MissingCustomerError):
        client.chat.completions.create(model="m", messages=HI)
    assert fake.calls == []  # no tokens spent


def test_bad_token_counts_are_checked_like_any_value(
    fake: FakeModelServer, meter: meterstream.MeterClient
) -> None:
    client = instrument(openai_client(fake))
    with meterstream.customer("cus_1"):
        client.embeddings.create(
            model="e", input="x", extra_headers={"x-fake-tokens": "input=-4,output=0"}
        )
    assert tokens(meter) == []
    assert meter.stats()["dropped_invalid"] == 1
