"""``meter()`` and the ``Call`` passed to value/customer/identifier callables.

The decorators record through a :class:`~meterstream._recorder.Recorder`
(the client), never through the client's own internals.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import AsyncGenerator, Generator, Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union, cast

import wrapt

from ._checks import (
    check_customer,
    check_dimensions,
    check_event_name,
    check_identifier,
    check_on_error,
    check_value,
)
from ._context import CUSTOMER
from ._recorder import Recorder
from .errors import InvalidEventError, _short_repr

__all__ = ["Call", "MeterSpec", "make_meter"]

_F = TypeVar("_F", bound=Callable[..., Any])
Number = Union[int, float, "Decimal"]

perf_counter = time.perf_counter


class Call:
    """What a ``value=``, ``customer=`` or ``identifier=`` callable is given.

    Attributes:
        args: positional arguments of the call (without ``self``/``cls``).
        kwargs: keyword arguments of the call.
        instance: the bound ``self`` or ``cls``, or None for plain functions.
        result: the return value (for generators, their return value; for
            ``metering()`` blocks, None).
        elapsed: seconds the call took (for generators: until exhausted or closed).
        exception: the exception the call raised, or None.
        items: for generators, how many items were yielded; otherwise 0.
    """

    __slots__ = ("args", "elapsed", "exception", "instance", "items", "kwargs", "result")

    def __init__(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        instance: Any = None,
        result: Any = None,
        elapsed: float = 0.0,
        exception: Optional[BaseException] = None,
        items: int = 0,
    ) -> None:
        self.args = args
        self.kwargs = kwargs
        self.instance = instance
        self.result = result
        self.elapsed = elapsed
        self.exception = exception
        self.items = items

    def __repr__(self) -> str:
        return (
            f"Call(args={self.args!r}, kwargs={self.kwargs!r}, result={self.result!r}, "
            f"elapsed={self.elapsed:.6f}, exception={self.exception!r})"
        )


class MeterSpec:
    """One ``meter()`` decoration, validated once at decoration time."""

    __slots__ = (
        "customer",
        "customer_fn",
        "dimensions",
        "event_name",
        "identifier",
        "identifier_fn",
        "on_error",
        "simple",
        "value",
        "value_fn",
    )

    def __init__(
        self,
        event_name: str,
        value: Any,
        customer: Any,
        identifier: Any,
        dimensions: Optional[Mapping[str, str]],
        on_error: str,
    ) -> None:
        self.event_name = check_event_name(event_name)
        self.value_fn = value if callable(value) else None
        # "is None", never truth: a callable object's __bool__ is not ours to call.
        self.value = check_value(value) if self.value_fn is None else None
        self.customer_fn = customer if callable(customer) else None
        self.customer: Optional[str] = None
        if customer is not None and self.customer_fn is None:
            self.customer = check_customer(customer)
        self.identifier_fn = identifier if callable(identifier) else None
        self.identifier = (
            check_identifier(identifier)
            if identifier is not None and self.identifier_fn is None
            else None
        )
        self.dimensions = check_dimensions(dimensions)
        self.on_error = check_on_error(on_error)
        # Nothing to compute from the call: the wrapper skips timing and Call.
        self.simple = (
            self.value_fn is None and self.customer_fn is None and (self.identifier_fn is None)
        )

    def finish(
        self,
        client: Recorder,
        context_customer: Optional[str],
        call: Optional[Call],
    ) -> None:
        """Record one use of the decorated function. Never raises unless asked to."""
        if call is None:
            client.record_use(
                self.event_name,
                self.value,
                self.customer or context_customer,
                self.identifier,
                self.dimensions,
                None,
            )
            return
        try:
            value = _evaluate("value", self.value_fn, self.value, call)
            customer = _evaluate("customer", self.customer_fn, self.customer, call)
            identifier = _evaluate("identifier", self.identifier_fn, self.identifier, call)
        except InvalidEventError as error:
            client.reject(error, self.event_name)
            return
        if customer is None or (type(customer) is str and not customer):
            customer = context_customer
        client.record_use(
            self.event_name,
            value,
            customer,
            identifier,
            self.dimensions,
            None,
        )


def _evaluate(field: str, fn: Optional[Callable[[Call], Any]], constant: Any, call: Call) -> Any:
    """The value of *field* for this call; a callable that raises is an invalid event."""
    if fn is None:
        return constant
    try:
        return fn(call)
    except Exception as exc:
        error = InvalidEventError(field, None, f"the {field} callable raised {_short_repr(exc)}")
        error.__cause__ = exc
        raise error from exc


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
            wrapper = _stream_wrapper(get_client, spec, _metered_async_generator)
        elif inspect.iscoroutinefunction(target):
            wrapper = _async_wrapper(get_client, spec)
        elif inspect.isgeneratorfunction(target):
            wrapper = _stream_wrapper(get_client, spec, _metered_generator)
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


def _start(client: Recorder, spec: MeterSpec) -> Any:
    """The context customer at call start; raises only for on_missing_customer='raise'."""
    customer = CUSTOMER.get()
    if customer is None and spec.customer is None and spec.customer_fn is None:
        customer = client.customer_at_start(spec.event_name)
    return customer


def _sync_wrapper(get_client: Callable[[], Recorder], spec: MeterSpec) -> Any:
    record_errors = spec.on_error == "record"

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        client = get_client()
        if not client.active:
            return wrapped(*args, **kwargs)
        customer = _start(client, spec)
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
        customer = _start(client, spec)
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


def _stream_wrapper(
    get_client: Callable[[], Recorder], spec: MeterSpec, metered: Callable[..., Any]
) -> Any:
    """For generators and async generators: meter the stream the call returns."""
    record_errors = spec.on_error == "record"

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        client = get_client()
        if not client.active:
            return wrapped(*args, **kwargs)
        customer = _start(client, spec)
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


def _metered_generator(
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


async def _metered_async_generator(
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


if TYPE_CHECKING:
    from decimal import Decimal
