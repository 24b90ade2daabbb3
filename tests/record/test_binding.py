"""``meter`` on every way a function can be bound (one test per way, as wrapt's tests do).

Each test calls the decorated callable once inside a customer block and checks
that exactly one event was recorded, with the right value and customer, and
that the ``Call`` saw the right ``instance`` and arguments (``self``/``cls``
excluded).
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any, Callable

import pytest

import meterstream

# Python 3.13 no longer lets classmethod chain to the descriptor it wraps, so
# a metered function *below* @classmethod is called as a plain function with
# the class as its first argument. Documented: put @meter above @classmethod.
CLASSMETHOD_BELOW = pytest.mark.skipif(
    sys.version_info >= (3, 13),
    reason="Python 3.13+: classmethod does not bind a wrapped descriptor; meter goes above",
)

CUSTOMER = "cus_binding"


class Recorder:
    """A ``value=`` callable that remembers each ``Call`` it is given."""

    def __init__(self) -> None:
        self.calls: list[meterstream.Call] = []

    def __call__(self, call: meterstream.Call) -> Any:
        self.calls.append(call)
        return call.args[0] if call.args else 1


def single_event(client: meterstream.MeterClient) -> dict[str, Any]:
    assert client.flush(5.0)
    events: list[dict[str, Any]] = client.exporter.events  # type: ignore[attr-defined]
    assert len(events) == 1, events
    return events[0]


def assert_one_event(client: meterstream.MeterClient, value: str, name: str = "bound") -> None:
    event = single_event(client)
    assert event["event_name"] == name
    assert event["payload"] == {"stripe_customer_id": CUSTOMER, "value": value}


# -- functions ------------------------------------------------------------------------------


@meterstream.meter("bound", value=lambda call: call.args[0])
def module_function(x: int) -> int:
    """A module-level function."""
    return x * 2


def test_plain_function(memory_client: meterstream.MeterClient) -> None:
    with meterstream.customer(CUSTOMER):
        assert module_function(7) == 14
    assert_one_event(memory_client, "7")


def test_nested_function(memory_client: meterstream.MeterClient) -> None:
    recorder = Recorder()

    @meterstream.meter("bound", value=recorder)
    def inner(x: int) -> int:
        return x + 1

    with meterstream.customer(CUSTOMER):
        assert inner(4) == 5
    assert_one_event(memory_client, "4")
    assert recorder.calls[0].instance is None
    assert recorder.calls[0].args == (4,)


def test_function_with_keyword_arguments(memory_client: meterstream.MeterClient) -> None:
    recorder = Recorder()

    @meterstream.meter("bound", value=recorder)
    def fn(x: int, *, y: int = 0) -> int:
        return x + y

    with meterstream.customer(CUSTOMER):
        assert fn(2, y=3) == 5
    assert_one_event(memory_client, "2")
    assert recorder.calls[0].args == (2,)
    assert recorder.calls[0].kwargs == {"y": 3}


def test_lambda(memory_client: meterstream.MeterClient) -> None:
    fn = meterstream.meter("bound", value=3)(lambda x: x)
    with meterstream.customer(CUSTOMER):
        assert fn("a") == "a"
    assert_one_event(memory_client, "3")


def test_client_meter_on_a_plain_function() -> None:
    client = meterstream.MeterClient(exporter="memory")
    try:

        @client.meter("bound", value=9)
        def fn() -> str:
            return "ok"

        with meterstream.customer(CUSTOMER):
            assert fn() == "ok"
        assert_one_event(client, "9")
    finally:
        client.shutdown(0)


# -- methods --------------------------------------------------------------------------------


def make_class(recorder: Recorder) -> type:
    class Service:
        @meterstream.meter("bound", value=recorder)
        def method(self, x: int) -> tuple[Any, int]:
            """An instance method."""
            return self, x

        @meterstream.meter("bound", value=recorder)
        @classmethod
        def class_above(cls, x: int) -> tuple[Any, int]:
            """Decorated above @classmethod."""
            return cls, x

        @classmethod
        @meterstream.meter("bound", value=recorder)
        def class_below(cls, x: int) -> tuple[Any, int]:
            """Decorated below @classmethod."""
            return cls, x

        @meterstream.meter("bound", value=recorder)
        @staticmethod
        def static_above(x: int) -> int:
            """Decorated above @staticmethod."""
            return x

        @staticmethod
        @meterstream.meter("bound", value=recorder)
        def static_below(x: int) -> int:
            """Decorated below @staticmethod."""
            return x

        @meterstream.meter("bound", value=recorder)
        async def async_method(self, x: int) -> tuple[Any, int]:
            return self, x

        @meterstream.meter("bound", value=lambda call: call.items)
        def gen_method(self, n: int) -> Iterator[int]:
            yield from range(n)

    return Service


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def service_class(recorder: Recorder) -> type:
    return make_class(recorder)


def test_instance_method(
    memory_client: meterstream.MeterClient, recorder: Recorder, service_class: type
) -> None:
    obj = service_class()
    with meterstream.customer(CUSTOMER):
        assert obj.method(5) == (obj, 5)
    assert_one_event(memory_client, "5")
    assert recorder.calls[0].instance is obj
    assert recorder.calls[0].args == (5,)


def test_instance_method_called_via_the_class(
    memory_client: meterstream.MeterClient, recorder: Recorder, service_class: type
) -> None:
    obj = service_class()
    with meterstream.customer(CUSTOMER):
        assert service_class.method(obj, 6) == (obj, 6)
    assert_one_event(memory_client, "6")
    assert recorder.calls[0].instance is obj
    assert recorder.calls[0].args == (6,)


def test_bound_method_object_kept_and_called_later(
    memory_client: meterstream.MeterClient, recorder: Recorder, service_class: type
) -> None:
    obj = service_class()
    bound = obj.method
    with meterstream.customer(CUSTOMER):
        assert bound(8) == (obj, 8)
    assert_one_event(memory_client, "8")
    assert recorder.calls[0].instance is obj


def test_plain_function_assigned_as_a_method(memory_client: meterstream.MeterClient) -> None:
    recorder = Recorder()

    def free(self: Any, x: int) -> tuple[Any, int]:
        return self, x

    class Holder:
        method = meterstream.meter("bound", value=recorder)(free)

    obj = Holder()
    with meterstream.customer(CUSTOMER):
        assert obj.method(3) == (obj, 3)
    assert_one_event(memory_client, "3")
    assert recorder.calls[0].instance is obj
    assert recorder.calls[0].args == (3,)


def test_classmethod_decorated_above_called_on_the_class(
    memory_client: meterstream.MeterClient, recorder: Recorder, service_class: type
) -> None:
    with meterstream.customer(CUSTOMER):
        assert service_class.class_above(2) == (service_class, 2)
    assert_one_event(memory_client, "2")
    assert recorder.calls[0].instance is service_class
    assert recorder.calls[0].args == (2,)


def test_classmethod_decorated_above_called_on_an_instance(
    memory_client: meterstream.MeterClient, recorder: Recorder, service_class: type
) -> None:
    with meterstream.customer(CUSTOMER):
        assert service_class().class_above(3) == (service_class, 3)
    assert_one_event(memory_client, "3")
    assert recorder.calls[0].instance is service_class


def test_constant_meter_below_classmethod_binds_on_every_python(
    memory_client: meterstream.MeterClient,
) -> None:
    # With constants, meter returns a plain function, which classmethod
    # binds on 3.13 as well (only wrapt's proxy cannot be bound there).
    class Service:
        @classmethod
        @meterstream.meter("bound", value=6)
        def build(cls, x: int) -> tuple[type, int]:
            return cls, x

    with meterstream.customer(CUSTOMER):
        assert Service.build(1) == (Service, 1)
        assert Service().build(2) == (Service, 2)
    assert memory_client.flush(5)
    events = memory_client.exporter.events  # type: ignore[attr-defined]
    assert [e["payload"]["value"] for e in events] == ["6", "6"]


@CLASSMETHOD_BELOW
def test_classmethod_decorated_below_called_on_the_class(
    memory_client: meterstream.MeterClient, recorder: Recorder, service_class: type
) -> None:
    with meterstream.customer(CUSTOMER):
        assert service_class.class_below(4) == (service_class, 4)
    assert_one_event(memory_client, "4")
    assert recorder.calls[0].instance is service_class
    assert recorder.calls[0].args == (4,)


@CLASSMETHOD_BELOW
def test_classmethod_decorated_below_called_on_an_instance(
    memory_client: meterstream.MeterClient, recorder: Recorder, service_class: type
) -> None:
    with meterstream.customer(CUSTOMER):
        assert service_class().class_below(5) == (service_class, 5)
    assert_one_event(memory_client, "5")
    assert recorder.calls[0].instance is service_class


def test_staticmethod_decorated_above(
    memory_client: meterstream.MeterClient, recorder: Recorder, service_class: type
) -> None:
    with meterstream.customer(CUSTOMER):
        assert service_class.static_above(6) == 6
        assert service_class().static_above(6) == 6
    assert memory_client.flush(5.0)
    events = memory_client.exporter.events  # type: ignore[attr-defined]
    assert [e["payload"]["value"] for e in events] == ["6", "6"]
    assert [c.args for c in recorder.calls] == [(6,), (6,)]
    assert [c.instance for c in recorder.calls] == [None, None]


def test_staticmethod_decorated_below(
    memory_client: meterstream.MeterClient, recorder: Recorder, service_class: type
) -> None:
    with meterstream.customer(CUSTOMER):
        assert service_class.static_below(7) == 7
        assert service_class().static_below(7) == 7
    assert memory_client.flush(5.0)
    events = memory_client.exporter.events  # type: ignore[attr-defined]
    assert [e["payload"]["value"] for e in events] == ["7", "7"]
    assert [c.args for c in recorder.calls] == [(7,), (7,)]
    assert [c.instance for c in recorder.calls] == [None, None]


def test_subclass_inherits_a_metered_method(
    memory_client: meterstream.MeterClient, recorder: Recorder, service_class: type
) -> None:
    sub = type("Sub", (service_class,), {})
    obj = sub()
    with meterstream.customer(CUSTOMER):
        obj.method(1)
        sub.class_above(2)
    assert memory_client.flush(5.0)
    assert len(memory_client.exporter.events) == 2  # type: ignore[attr-defined]
    assert recorder.calls[0].instance is obj
    assert recorder.calls[1].instance is sub


def test_async_method(
    memory_client: meterstream.MeterClient, recorder: Recorder, service_class: type
) -> None:
    obj = service_class()

    async def main() -> Any:
        with meterstream.customer(CUSTOMER):
            return await obj.async_method(9)

    assert asyncio.run(main()) == (obj, 9)
    assert_one_event(memory_client, "9")
    assert recorder.calls[0].instance is obj


def test_generator_method(memory_client: meterstream.MeterClient, service_class: type) -> None:
    with meterstream.customer(CUSTOMER):
        assert list(service_class().gen_method(3)) == [0, 1, 2]
    assert_one_event(memory_client, "3")


# -- coroutines and generators ------------------------------------------------------------------


def test_async_function(memory_client: meterstream.MeterClient) -> None:
    recorder = Recorder()

    @meterstream.meter("bound", value=recorder)
    async def fetch(x: int) -> int:
        await asyncio.sleep(0)
        return x * 3

    async def main() -> int:
        async with meterstream.customer(CUSTOMER):
            return await fetch(11)

    assert asyncio.run(main()) == 33
    assert_one_event(memory_client, "11")
    assert recorder.calls[0].result == 33


def test_generator_function(memory_client: meterstream.MeterClient) -> None:
    @meterstream.meter("bound", value=lambda call: call.items)
    def numbers(n: int) -> Iterator[int]:
        yield from range(n)

    with meterstream.customer(CUSTOMER):
        assert list(numbers(4)) == [0, 1, 2, 3]
    assert_one_event(memory_client, "4")


def test_async_generator_function(memory_client: meterstream.MeterClient) -> None:
    @meterstream.meter("bound", value=lambda call: call.items)
    async def numbers(n: int) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    async def main() -> list[int]:
        with meterstream.customer(CUSTOMER):
            return [i async for i in numbers(5)]

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]
    assert_one_event(memory_client, "5")


def test_decorators_applied_before_configure_use_the_new_default_client() -> None:
    @meterstream.meter("bound", value=2)
    def fn() -> None:
        return None

    first = meterstream.configure(exporter="memory")
    second = meterstream.configure(exporter="memory")
    with meterstream.customer(CUSTOMER):
        fn()
    assert_one_event(second, "2")
    assert first.exporter.events == []  # type: ignore[attr-defined]
    second.shutdown(0)


# -- what the wrapper keeps -----------------------------------------------------------------------


def _sync(a: int, b: str = "x", *args: Any, c: float = 1.0, **kwargs: Any) -> str:
    """Sync docstring."""
    return b


async def _coro(a: int, *, b: int = 2) -> int:
    """Coroutine docstring."""
    return a


def _gen(n: int) -> Iterator[int]:
    """Generator docstring."""
    yield n


async def _agen(n: int) -> AsyncIterator[int]:
    """Async generator docstring."""
    yield n


KINDS: list[tuple[str, Callable[..., Any]]] = [
    ("function", _sync),
    ("coroutine function", _coro),
    ("generator function", _gen),
    ("async generator function", _agen),
]


@pytest.mark.parametrize(("kind", "fn"), KINDS, ids=[k for k, _ in KINDS])
def test_wrapper_keeps_name_qualname_doc_and_module(kind: str, fn: Callable[..., Any]) -> None:
    wrapped = meterstream.meter("bound")(fn)
    assert wrapped.__name__ == fn.__name__
    assert wrapped.__qualname__ == fn.__qualname__
    assert wrapped.__doc__ == fn.__doc__
    assert wrapped.__module__ == fn.__module__
    assert wrapped.__wrapped__ is fn  # type: ignore[attr-defined]


@pytest.mark.parametrize(("kind", "fn"), KINDS, ids=[k for k, _ in KINDS])
def test_wrapper_keeps_signature(kind: str, fn: Callable[..., Any]) -> None:
    wrapped = meterstream.meter("bound")(fn)
    assert inspect.signature(wrapped) == inspect.signature(fn)


@pytest.mark.parametrize(("kind", "fn"), KINDS, ids=[k for k, _ in KINDS])
def test_wrapper_keeps_function_kind(kind: str, fn: Callable[..., Any]) -> None:
    wrapped = meterstream.meter("bound")(fn)
    assert inspect.iscoroutinefunction(wrapped) is inspect.iscoroutinefunction(fn)
    assert inspect.isgeneratorfunction(wrapped) is inspect.isgeneratorfunction(fn)
    assert inspect.isasyncgenfunction(wrapped) is inspect.isasyncgenfunction(fn)


def test_methods_keep_name_doc_and_signature(service_class: type) -> None:
    for name, params in [
        ("method", ["x"]),
        ("class_above", ["x"]),
        ("class_below", ["x"]),
        ("static_above", ["x"]),
        ("static_below", ["x"]),
    ]:
        attr = getattr(service_class, name)
        assert attr.__name__ == name
        assert attr.__qualname__.endswith("Service." + name)
        assert attr.__doc__ is not None
        assert list(inspect.signature(getattr(service_class(), name)).parameters) == params


def test_async_method_stays_a_coroutine_function(service_class: type) -> None:
    assert inspect.iscoroutinefunction(service_class.async_method)
    assert inspect.iscoroutinefunction(service_class().async_method)
