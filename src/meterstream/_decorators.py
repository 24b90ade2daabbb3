"""``meter()``, ``metering()`` and the ``Call`` passed to value/customer callables."""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from collections.abc import AsyncGenerator, Generator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union, cast

import wrapt

from ._context import CUSTOMER
from ._events import (
    check_customer,
    check_dimensions,
    check_event_name,
    check_identifier,
    check_value,
)
from .errors import InvalidEventError, _short_repr

if TYPE_CHECKING:
    from ._client import MeterClient

__all__ = ["Call", "Usage", "make_meter", "metering"]

_F = TypeVar("_F", bound=Callable[..., Any])
Number = Union[int, float, "Decimal"]
ON_ERROR = ("skip", "record")

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
        client: MeterClient,
        context_customer: Optional[str],
        call: Optional[Call],
    ) -> None:
        """Record one use of the decorated function. Never raises unless asked to."""
        if call is None:
            client._record(
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
            client._reject(error, self.event_name)
            return
        if customer is None or (type(customer) is str and not customer):
            customer = context_customer
        client._record(
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


def check_on_error(on_error: Any) -> str:
    if type(on_error) is not str or on_error not in ON_ERROR:
        raise InvalidEventError("on_error", on_error, "must be 'skip' or 'record'")
    return on_error


def make_meter(
    get_client: Callable[[], MeterClient],
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
    get_client: Callable[[], MeterClient], spec: MeterSpec, fn: Any
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
            if not client._active:
                return await fn(*args, **kwargs)
            customer = fixed_customer or get_customer()
            if customer is None:
                customer = client._fallback_customer(name)
            result = await fn(*args, **kwargs)
            if identifier is None:
                client._record_simple(name, value, customer, dimensions)
            else:
                client._record(name, value, customer, identifier, dimensions, None)
            return result

    elif not (inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)):

        def metered(*args: Any, **kwargs: Any) -> Any:
            client = get_client()
            if not client._active:
                return fn(*args, **kwargs)
            customer = fixed_customer or get_customer()
            if customer is None:
                customer = client._fallback_customer(name)
            result = fn(*args, **kwargs)
            if identifier is None:
                client._record_simple(name, value, customer, dimensions)
            else:
                client._record(name, value, customer, identifier, dimensions, None)
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


def _start(client: MeterClient, spec: MeterSpec) -> Any:
    """The context customer at call start; raises only for on_missing_customer='raise'."""
    customer = CUSTOMER.get()
    if customer is None and spec.customer is None and spec.customer_fn is None:
        customer = client._fallback_customer(spec.event_name)
    return customer


def _sync_wrapper(get_client: Callable[[], MeterClient], spec: MeterSpec) -> Any:
    record_errors = spec.on_error == "record"

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        client = get_client()
        if not client._active:
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


def _async_wrapper(get_client: Callable[[], MeterClient], spec: MeterSpec) -> Any:
    simple = spec.simple
    record_errors = spec.on_error == "record"

    async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        client = get_client()
        if not client._active:
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
    get_client: Callable[[], MeterClient], spec: MeterSpec, metered: Callable[..., Any]
) -> Any:
    """For generators and async generators: meter the stream the call returns."""
    record_errors = spec.on_error == "record"

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        client = get_client()
        if not client._active:
            return wrapped(*args, **kwargs)
        customer = _start(client, spec)
        return metered(
            client, spec, customer, record_errors, wrapped(*args, **kwargs), instance, args, kwargs
        )

    return wrapper


def _finish_stream(
    spec: MeterSpec,
    client: MeterClient,
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
    client: MeterClient,
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
    client: MeterClient,
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


class Usage:
    """The handle a ``metering()`` block yields: set or add to its value.

    If the block never sets it, the value is 1.
    """

    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value: Any = None

    @property
    def value(self) -> Any:
        return 1 if self._value is None else self._value

    @value.setter
    def value(self, value: Any) -> None:
        self._value = value

    def add(self, amount: Any = 1) -> None:
        """Add *amount* to the value (starting from 0, not from the default 1)."""
        self._value = amount if self._value is None else self._value + amount

    def __repr__(self) -> str:
        return f"Usage(value={self.value!r})"


class _Entry:
    """One entry into a ``metering()`` block: its client, customer, usage and clock."""

    __slots__ = ("client", "customer", "started", "token", "usage")

    def __init__(self, client: Optional[MeterClient], customer: Any, usage: Usage) -> None:
        self.client = client
        self.customer = customer
        self.usage = usage
        self.started = perf_counter()
        self.token: Optional[contextvars.Token[Optional[_Node]]] = None


#: The ``metering()`` blocks entered in this context, innermost first, as a
#: linked list ``(block, entry, outer)``. A context variable, so that threads
#: and asyncio tasks entering the same block object each find their own entry
#: when they leave it.
_Node = tuple["metering", _Entry, Any]
_ENTERED: contextvars.ContextVar[Optional[_Node]] = contextvars.ContextVar(
    "meterstream_metering", default=None
)


class metering:
    """Meter a block of code: ``with client.metering("gpu_seconds") as usage: ...``.

    Works with ``with`` and ``async with``. The use is recorded when the block
    exits; a block that raises records nothing unless ``on_error="record"``.

    The object can be kept and entered again, nested in itself, or entered
    from several threads and tasks at once: every entry takes the customer
    current at that moment and yields a fresh :class:`Usage`.
    """

    __slots__ = (
        "_customer",
        "_dimensions",
        "_error",
        "_event_name",
        "_get_client",
        "_identifier",
        "_on_error",
    )

    def __init__(
        self,
        get_client: Callable[[], MeterClient],
        event_name: str,
        *,
        customer: Optional[str] = None,
        identifier: Optional[str] = None,
        dimensions: Optional[Mapping[str, str]] = None,
        on_error: str = "skip",
    ) -> None:
        self._get_client = get_client
        self._event_name: Any = event_name
        self._customer: Optional[str] = None
        self._identifier: Optional[str] = None
        self._dimensions: Optional[dict[str, str]] = None
        self._on_error = "skip"
        # Checked now, but refused only when the block is entered, by the
        # client: with raise_errors=False the block must run all the same.
        self._error: Optional[InvalidEventError] = None
        try:
            self._event_name = check_event_name(event_name)
            if customer is not None and not (type(customer) is str and not customer):
                self._customer = check_customer(customer)
            if identifier is not None:
                self._identifier = check_identifier(identifier)
            self._dimensions = check_dimensions(dimensions)
            self._on_error = check_on_error(on_error)
        except InvalidEventError as error:
            self._error = error

    def __enter__(self) -> Usage:
        client = self._get_client()
        if self._error is not None:
            if client._active:
                client._reject(self._error, self._event_name)  # raises if raise_errors
            # The block runs and records nothing: the error is counted once.
            entry = _Entry(None, None, Usage())
            entry.token = _ENTERED.set((self, entry, _ENTERED.get()))
            return entry.usage
        customer: Any = self._customer or CUSTOMER.get()
        if customer is None and client._active:
            customer = client._fallback_customer(self._event_name)
        entry = _Entry(client, customer, Usage())
        entry.token = _ENTERED.set((self, entry, _ENTERED.get()))
        return entry.usage

    def _leave(self) -> Optional[_Entry]:
        """Take this block's innermost entry off the context's list."""
        node = _ENTERED.get()
        top = node
        while node is not None and node[0] is not self:
            node = node[2]
        if node is None:
            return None  # left in another context than it was entered in
        entry = node[1]
        if node is top and entry.token is not None:
            try:
                _ENTERED.reset(entry.token)
                return entry
            except ValueError:  # the token belongs to another context
                pass
        _ENTERED.set(_without(top, node))
        return entry

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        entry = self._leave()
        if entry is None:
            return
        client = entry.client
        if client is None or not client._active:
            return
        if exc is not None and self._on_error != "record":
            return
        client._record(
            self._event_name,
            entry.usage.value,
            entry.customer,
            self._identifier,
            self._dimensions,
            None,
        )

    async def __aenter__(self) -> Usage:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def _without(top: Optional[_Node], gone: _Node) -> Optional[_Node]:
    """The list *top* without the node *gone* (blocks left out of order)."""
    kept: list[_Node] = []
    node = top
    while node is not None and node is not gone:
        kept.append(node)
        node = node[2]
    rest: Optional[_Node] = gone[2]
    for block, entry, _ in reversed(kept):
        entry.token = None  # it would restore a list that still holds *gone*
        rest = (block, entry, rest)
    return rest


if TYPE_CHECKING:
    from decimal import Decimal
