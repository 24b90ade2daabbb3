"""``meter()``: wrap a function so that each call records one use.

The decorators record through a :class:`~meterstream._record.recorder.Recorder`
(the client), never through the client's own internals.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any, Callable, Optional, TypeVar, cast

import wrapt

from meterstream._record.call import Call, MeterSpec, customer_at_call_start, perf_counter
from meterstream._record.context import CUSTOMER
from meterstream._record.recorder import Recorder
from meterstream._record.streams import metered_async_generator, metered_generator, stream_wrapper

__all__ = ["make_meter"]

_F = TypeVar("_F", bound=Callable[..., Any])


def make_meter(
    get_client: Callable[[], Recorder],
    event_name: str,
    *,
    value: Any = 1,
    customer: Any = None,
    identifier: Any = None,
    dimensions: Optional[Mapping[str, str]] = None,
    on_error: str = "skip",
) -> Callable[[_F], _F]:
    spec = MeterSpec(event_name, value, customer, identifier, dimensions, on_error)

    def decorate(fn: _F) -> _F:
        fast = _simple_function(get_client, spec, fn)
        if fast is not None:
            return cast(_F, fast)
        target = getattr(fn, "__func__", fn)  # classmethod / staticmethod objects
        if inspect.isasyncgenfunction(target):
            wrapper = stream_wrapper(get_client, spec, metered_async_generator)
        elif inspect.iscoroutinefunction(target):
            wrapper = _async_wrapper(get_client, spec)
        elif inspect.isgeneratorfunction(target):
            wrapper = stream_wrapper(get_client, spec, metered_generator)
        else:
            wrapper = _sync_wrapper(get_client, spec)
        if _is_plain_function(fn):
            return cast(_F, _PlainFunctionWrapper(fn, wrapper))
        return cast(_F, wrapt.decorator(wrapper)(fn))

    return decorate


def _simple_function(
    get_client: Callable[[], Recorder], spec: MeterSpec, fn: Any
) -> Optional[Callable[..., Any]]:
    """The common case, a function metered with constants, as a plain function.

    No ``Call`` is built, so nothing needs the instance a method is bound to:
    a real function (bound like any other when it is a method) does, without
    the cost of a proxy's call (about 0.5 us a call). Everything else
    (callables given for value, customer or identifier, ``on_error="record"``,
    generators, classmethod and staticmethod objects) goes through wrapt.
    """
    if not spec.simple or spec.on_error == "record" or not inspect.isfunction(fn):
        return None
    name, value, fixed_customer = spec.event_name, spec.value, spec.customer
    identifier, dimensions = spec.identifier, spec.dimensions
    get_customer = CUSTOMER.get
    metered: Callable[..., Any]
    if inspect.iscoroutinefunction(fn):

        async def metered(*args: Any, **kwargs: Any) -> Any:
            client = get_client()
            if not client.active:
                return await fn(*args, **kwargs)
            customer = fixed_customer or get_customer()
            if customer is None:
                customer = client.customer_at_start(name)
            result = await fn(*args, **kwargs)
            if identifier is None:
                client.record_constant(name, value, customer, dimensions)
            else:
                client.record_use(name, value, customer, identifier, dimensions, None)
            return result

    elif not (inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)):

        def metered(*args: Any, **kwargs: Any) -> Any:
            client = get_client()
            if not client.active:
                return fn(*args, **kwargs)
            customer = fixed_customer or get_customer()
            if customer is None:
                customer = client.customer_at_start(name)
            result = fn(*args, **kwargs)
            if identifier is None:
                client.record_constant(name, value, customer, dimensions)
            else:
                client.record_use(name, value, customer, identifier, dimensions, None)
            return result

    else:
        return None
    return functools.update_wrapper(metered, fn)


class _PlainFunctionWrapper(wrapt.FunctionWrapper):  # type: ignore[type-arg]
    """wrapt's ``FunctionWrapper`` with a direct ``__call__`` for plain functions.

    On each call of a wrapped plain function, wrapt looks for a ``__self__``
    that functions do not have, and the AttributeError it swallows costs more
    than everything else metering does. A plain function has no instance to
    find, so this skips the search; binding (``__get__``) is wrapt's own.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        wrapper: Callable[..., Any] = self._self_wrapper
        return wrapper(self.__wrapped__, None, args, kwargs)


def _is_plain_function(fn: Any) -> bool:
    """A module-level or nested function, not one defined in a class body."""
    if not inspect.isfunction(fn):
        return False
    parts = fn.__qualname__.split(".")
    return len(parts) == 1 or parts[-2] == "<locals>"


def _sync_wrapper(get_client: Callable[[], Recorder], spec: MeterSpec) -> Any:
    record_errors = spec.on_error == "record"

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        client = get_client()
        if not client.active:
            return wrapped(*args, **kwargs)
        customer = customer_at_call_start(client, spec)
        started = perf_counter()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            if record_errors:
                call = Call(args, kwargs, instance, None, perf_counter() - started, exc)
                spec.finish(client, customer, call)
            raise
        spec.finish(
            client,
            customer,
            None if spec.simple else Call(args, kwargs, instance, result, perf_counter() - started),
        )
        return result

    return wrapper


def _async_wrapper(get_client: Callable[[], Recorder], spec: MeterSpec) -> Any:
    simple = spec.simple
    record_errors = spec.on_error == "record"

    async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        client = get_client()
        if not client.active:
            return await wrapped(*args, **kwargs)
        customer = customer_at_call_start(client, spec)
        started = perf_counter()
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            if record_errors:
                call = Call(args, kwargs, instance, None, perf_counter() - started, exc)
                spec.finish(client, customer, call)
            raise
        spec.finish(
            client,
            customer,
            None if simple else Call(args, kwargs, instance, result, perf_counter() - started),
        )
        return result

    return wrapper
