"""``meter()`` on generators and async generators: one use when the stream ends."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any, Callable, Optional

from meterstream._record.call import Call, MeterSpec, customer_at_call_start, perf_counter
from meterstream._record.recorder import Recorder

__all__ = ["metered_async_generator", "metered_generator", "stream_wrapper"]


def stream_wrapper(
    get_client: Callable[[], Recorder], spec: MeterSpec, metered: Callable[..., Any]
) -> Any:
    """For generators and async generators: meter the stream the call returns."""
    record_errors = spec.on_error == "record"

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        client = get_client()
        if not client.active:
            return wrapped(*args, **kwargs)
        customer = customer_at_call_start(client, spec)
        return metered(
            client, spec, customer, record_errors, wrapped(*args, **kwargs), instance, args, kwargs
        )

    return wrapper


def _finish_stream(
    spec: MeterSpec,
    client: Recorder,
    customer: Optional[str],
    call: tuple[Any, Any, Any],
    started: float,
    result: Any,
    exception: Optional[BaseException],
    items: int,
) -> None:
    args, kwargs, instance = call
    spec.finish(
        client,
        customer,
        Call(args, kwargs, instance, result, perf_counter() - started, exception, items),
    )


def metered_generator(
    client: Recorder,
    spec: MeterSpec,
    customer: Optional[str],
    record_errors: bool,
    gen: Generator[Any, Any, Any],
    instance: Any,
    args: Any,
    kwargs: Any,
) -> Generator[Any, Any, Any]:
    # A hand-written delegation loop rather than ``yield from`` so the items
    # can be counted; send() and throw() are forwarded as yield from would.
    started = perf_counter()
    items = 0
    to_send: Any = None
    to_throw: Optional[BaseException] = None
    try:
        while True:
            try:
                if to_throw is not None:
                    exc, to_throw = to_throw, None
                    item = gen.throw(exc)
                else:
                    item = gen.send(to_send)
            except StopIteration as stop:
                result = stop.value
                break
            items += 1
            try:
                to_send = yield item
            except GeneratorExit:
                gen.close()
                raise
            except BaseException as exc:
                to_throw = exc
    except GeneratorExit:
        # Closed early by the consumer: the use happened, record it.
        _finish_stream(spec, client, customer, (args, kwargs, instance), started, None, None, items)
        raise
    except BaseException as exc:
        if record_errors:
            _finish_stream(
                spec, client, customer, (args, kwargs, instance), started, None, exc, items
            )
        raise
    _finish_stream(spec, client, customer, (args, kwargs, instance), started, result, None, items)
    return result


async def metered_async_generator(
    client: Recorder,
    spec: MeterSpec,
    customer: Optional[str],
    record_errors: bool,
    agen: AsyncGenerator[Any, Any],
    instance: Any,
    args: Any,
    kwargs: Any,
) -> AsyncGenerator[Any, Any]:
    started = perf_counter()
    items = 0
    to_send: Any = None
    to_throw: Optional[BaseException] = None
    try:
        while True:
            try:
                if to_throw is not None:
                    exc, to_throw = to_throw, None
                    item = await agen.athrow(exc)
                else:
                    item = await agen.asend(to_send)
            except StopAsyncIteration:
                break
            items += 1
            try:
                to_send = yield item
            except GeneratorExit:
                await agen.aclose()
                raise
            except BaseException as exc:
                to_throw = exc
    except GeneratorExit:
        _finish_stream(spec, client, customer, (args, kwargs, instance), started, None, None, items)
        raise
    except BaseException as exc:
        if record_errors:
            _finish_stream(
                spec, client, customer, (args, kwargs, instance), started, None, exc, items
            )
        raise
    _finish_stream(spec, client, customer, (args, kwargs, instance), started, None, None, items)
