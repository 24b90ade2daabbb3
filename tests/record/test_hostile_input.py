"""``raise_errors=False`` means the host call never sees our errors, whatever it passes.

Arbitrary objects, hostile ones included (``__repr__``, ``__str__``,
``__float__``, ``__eq__``, ``__hash__``, ``__bool__`` ... that raise), go
through every way of recording: ``record``, ``meter`` (sync, async,
generators, async generators; constants and callables), ``metering`` and
``customer``. With ``raise_errors=False`` the call returns its own result;
with ``raise_errors=True`` the only exceptions are meterstream's, naming the
field. Constants given to ``@meter`` stay a decoration-time
``InvalidEventError`` in both modes (a programming error, at import).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meterstream

CUS = "cus_hostile"
FIELDS = {"event_name", "value", "customer", "identifier", "dimensions", "timestamp", "on_error"}

HOSTILE_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class HostileError(Exception):
    """What hostile dunders raise: never meterstream's."""


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise HostileError("hostile")


DUNDERS = (
    "__repr__",
    "__str__",
    "__format__",
    "__float__",
    "__int__",
    "__index__",
    "__eq__",
    "__ne__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__hash__",
    "__bool__",
    "__len__",
    "__iter__",
    "__contains__",
    "__getitem__",
    "__add__",
    "__radd__",
    "__call__",
)


def hostile_class(base: type, dunders: frozenset[str]) -> type:
    namespace: dict[str, Any] = dict.fromkeys(dunders, _boom)
    if base is str:
        # What str methods the checks might call.
        namespace.update(strip=_boom, isprintable=_boom, isspace=_boom, encode=_boom)
    return type(f"Hostile{base.__name__.title()}", (base,), namespace)


class ArrayLike:
    """What a numpy array does: == is elementwise, truth is ambiguous."""

    def __eq__(self, other: object) -> Any:
        return ArrayLike()

    def __ne__(self, other: object) -> Any:
        return ArrayLike()

    def __bool__(self) -> bool:
        raise ValueError("The truth value of an array with more than one element is ambiguous")

    __hash__ = None  # type: ignore[assignment]


class OrmObject:
    """An ORM row someone passed instead of its stripe_id."""

    def __init__(self) -> None:
        self.stripe_id = "cus_orm"

    def __repr__(self) -> str:
        return "<Account 7>"


dunder_sets = st.frozensets(st.sampled_from(DUNDERS), min_size=1)


class Recipe:
    """How to make a hostile object, made only inside the test body.

    Hypothesis itself calls repr() and == on the values it generates (to
    report them, and to replay examples): the objects must not exist before
    the code under test gets them.
    """

    def __init__(self, make: Callable[[], Any], label: str) -> None:
        self.make = make
        self.label = label

    def __repr__(self) -> str:
        return f"Recipe({self.label})"


def _hostile(base: type) -> st.SearchStrategy[Recipe]:
    def recipe(dunders: frozenset[str]) -> Recipe:
        def make() -> Any:
            cls = hostile_class(base, dunders)
            if base is object:
                return cls()
            sample = {int: 7, float: 2.5, str: "cus_x", Decimal: Decimal("3")}[base]
            return cls(sample)

        return Recipe(make, f"{base.__name__} raising in {sorted(dunders)}")

    return st.builds(recipe, dunder_sets)


def made(value: Any) -> Any:
    """*value* with every Recipe in it (also as a dict value) made into its object."""
    if type(value) is Recipe:
        return value.make()
    if type(value) is dict:
        return {key: made(val) for key, val in value.items()}
    return value


hostile = st.one_of(
    _hostile(object),
    _hostile(int),
    _hostile(float),
    _hostile(str),
    _hostile(Decimal),
    st.just(Recipe(ArrayLike, "ArrayLike")),
    st.just(Recipe(OrmObject, "OrmObject")),
)
plain = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.just(10**400),
    st.just(-(10**5000)),
    st.floats(),
    st.decimals(),
    st.text(max_size=30),
    st.binary(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    st.datetimes(),
    st.datetimes(timezones=st.just(timezone.utc)),
    st.complex_numbers(),
    st.sampled_from([math.nan, math.inf, Decimal("1E+999999999"), Decimal("sNaN")]),
)
anything = st.one_of(hostile, plain)
valid_values = st.one_of(st.integers(0, 10**6), st.floats(0, 1e6), st.just(Decimal("2.5")))


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a valid value (so the other fields get their turn), sometimes anything."""
    return st.one_of(valid, valid, anything)


names = maybe(st.sampled_from(["calls", "tokens"]))
values = maybe(valid_values)
customers = maybe(st.sampled_from([CUS, None]))
identifiers = maybe(st.one_of(st.none(), st.text("abc123", min_size=1, max_size=10)))
dimension_sets = maybe(st.one_of(st.none(), st.just({"model": "m1"})))
dimension_sets = st.one_of(
    dimension_sets,
    st.dictionaries(st.sampled_from(["model", "tier"]), anything, min_size=1, max_size=2),
)
timestamps = maybe(st.none())


# -- fixtures: clients, and logging that must not fail ----------------------------------------


@pytest.fixture
def logging_errors(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Formatting errors in our log lines (a hostile repr in a message): collected."""
    errors: list[Any] = []

    def handle_error(self: logging.Handler, record: logging.LogRecord) -> None:
        errors.append(record.msg)

    monkeypatch.setattr(logging.Handler, "handleError", handle_error)
    yield errors


@pytest.fixture(params=[False, True], ids=["lenient", "strict"])
def client(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[meterstream.MeterClient]:
    caplog.set_level(logging.DEBUG, logger="meterstream")  # every line is formatted
    c = meterstream.configure(exporter="memory", raise_errors=request.param)
    yield c
    c.shutdown(0)


def fresh_logs(client: meterstream.MeterClient) -> None:
    """Let every example log its first line again (the log is rate-limited)."""
    client._log.reset()


def check_outcome(
    client: meterstream.MeterClient, run: Callable[[], Any], expected: Any = "result"
) -> None:
    """Lenient: *run* returns *expected*. Strict: that, or an InvalidEventError naming a field."""
    fresh_logs(client)
    if not client.settings.raise_errors:
        assert run() == expected
        return
    try:
        result = run()
    except meterstream.InvalidEventError as exc:
        assert exc.field.split("[")[0] in FIELDS, exc.field
        message = str(exc)
        assert message.startswith(exc.field)
        repr(exc)
    else:
        assert result == expected


def check_decoration(make: Callable[[], Any]) -> Optional[Any]:
    """Decorating with constants: it works, or raises InvalidEventError naming the field."""
    try:
        return make()
    except meterstream.InvalidEventError as exc:
        assert exc.field.split("[")[0] in FIELDS, exc.field
        str(exc)
        return None


# -- record() -------------------------------------------------------------------------------


@HOSTILE_SETTINGS
@given(
    name=names,
    value=values,
    customer=customers,
    identifier=identifiers,
    dimensions=dimension_sets,
    timestamp=timestamps,
)
def test_record_never_raises_anything_but_invalid_event_error(
    client: meterstream.MeterClient,
    logging_errors: list[Any],
    name: Any,
    value: Any,
    customer: Any,
    identifier: Any,
    dimensions: Any,
    timestamp: Any,
) -> None:
    name, value, customer, identifier, dimensions, timestamp = map(
        made, (name, value, customer, identifier, dimensions, timestamp)
    )

    def run() -> str:
        client.record(
            name,
            value,
            customer=customer,
            identifier=identifier,
            dimensions=dimensions,
            timestamp=timestamp,
        )
        return "result"

    with meterstream.customer(CUS):
        check_outcome(client, run)
    assert logging_errors == []


@pytest.mark.parametrize(
    "timestamp", [10**400, -(10**400), 1e308, -1e308, Decimal("1E+999"), 2**63]
)
def test_a_timestamp_too_large_to_be_a_time_is_an_invalid_event(
    client: meterstream.MeterClient, timestamp: Any
) -> None:
    def run() -> str:
        client.record("calls", customer=CUS, timestamp=timestamp)
        return "result"

    check_outcome(client, run)
    if client.settings.raise_errors:
        with pytest.raises(meterstream.InvalidEventError) as info:
            run()
        assert info.value.field == "timestamp"
    else:
        assert client.flush(30)
        assert client.stats()["dropped_invalid"] == 1


# -- meter(): every kind of function, constants and callables ---------------------------------

KINDS = ["sync", "async", "generator", "async_generator"]


def decorated(
    client: meterstream.MeterClient, kind: str, **kwargs: Any
) -> Optional[Callable[[], Any]]:
    """A function of *kind* metered by *client* with *kwargs*, and how to call it to a result."""

    def sync() -> str:
        return "result"

    async def coro() -> str:
        return "result"

    def gen() -> Iterator[str]:
        yield "res"
        yield "ult"

    async def agen() -> AsyncIterator[str]:
        yield "res"
        yield "ult"

    fn = {"sync": sync, "async": coro, "generator": gen, "async_generator": agen}[kind]
    wrapped = check_decoration(lambda: client.meter(**kwargs)(fn))
    if wrapped is None:
        return None
    if kind == "sync":
        return wrapped  # type: ignore[no-any-return]
    if kind == "async":
        return lambda: asyncio.run(wrapped())  # type: ignore[misc]
    if kind == "generator":
        return lambda: "".join(wrapped())  # type: ignore[misc]

    async def drain() -> str:
        return "".join([item async for item in wrapped()])  # type: ignore[misc]

    return lambda: asyncio.run(drain())


@HOSTILE_SETTINGS
@given(
    kind=st.sampled_from(KINDS),
    name=names,
    value=values,
    customer=customers,
    identifier=identifiers,
    dimensions=dimension_sets,
    on_error=maybe(st.sampled_from(["skip", "record"])),
)
def test_meter_with_constants_fails_only_at_decoration_and_never_breaks_the_call(
    client: meterstream.MeterClient,
    logging_errors: list[Any],
    kind: str,
    name: Any,
    value: Any,
    customer: Any,
    identifier: Any,
    dimensions: Any,
    on_error: Any,
) -> None:
    name, value, customer, identifier, dimensions, on_error = map(
        made, (name, value, customer, identifier, dimensions, on_error)
    )
    call = decorated(
        client,
        kind,
        event_name=name,
        value=value,
        customer=customer,
        identifier=identifier,
        dimensions=dimensions,
        on_error=on_error,
    )
    if call is not None:
        with meterstream.customer(CUS):
            check_outcome(client, call)
    assert logging_errors == []


def _callable_returning(obj: Any, raises: bool) -> Callable[[meterstream.Call], Any]:
    def fn(call: meterstream.Call) -> Any:
        if raises:
            raise HostileError("the callable itself failed")
        return obj

    return fn


@HOSTILE_SETTINGS
@given(
    kind=st.sampled_from(KINDS),
    field=st.sampled_from(["value", "customer", "identifier"]),
    returned=anything,
    raises=st.booleans(),
    in_context=st.sampled_from([CUS, None, "  ", "cus\n1"]),
)
def test_meter_with_callables_returning_anything_never_breaks_the_call(
    client: meterstream.MeterClient,
    logging_errors: list[Any],
    kind: str,
    field: str,
    returned: Any,
    raises: bool,
    in_context: Optional[str],
) -> None:
    returned = made(returned)
    kwargs: dict[str, Any] = {"event_name": "calls", field: _callable_returning(returned, raises)}
    call = decorated(client, kind, **kwargs)
    assert call is not None  # callables are not checked at decoration time
    with meterstream.customer(in_context):
        check_outcome(client, call)
    assert logging_errors == []


class ExceptionWithHostileRepr(Exception):
    def __repr__(self) -> str:
        raise HostileError("repr")

    def __str__(self) -> str:
        raise HostileError("str")


def test_a_callable_raising_an_exception_whose_repr_raises(
    client: meterstream.MeterClient, logging_errors: list[Any]
) -> None:
    def value(call: meterstream.Call) -> Any:
        raise ExceptionWithHostileRepr()

    metered = client.meter("calls", value=value)(lambda: "result")
    with meterstream.customer(CUS):
        check_outcome(client, metered)
    assert logging_errors == []


def test_a_non_string_customer_does_not_lose_the_result(
    client: meterstream.MeterClient, logging_errors: list[Any]
) -> None:
    ran: list[int] = []

    @client.meter("calls", customer=lambda call: call.kwargs["account"])
    def handler(*, account: Any) -> str:
        ran.append(1)
        return "result"

    for account in (ArrayLike(), OrmObject()):
        check_outcome(client, lambda account=account: handler(account=account))  # type: ignore[misc]
    assert len(ran) >= 2
    if not client.settings.raise_errors:
        assert client.flush(30)
        assert client.stats()["dropped_invalid"] == 2
    assert logging_errors == []


# -- metering() -----------------------------------------------------------------------------


@HOSTILE_SETTINGS
@given(
    name=names,
    customer=customers,
    identifier=identifiers,
    dimensions=dimension_sets,
    on_error=maybe(st.sampled_from(["skip", "record"])),
    value=values,
    is_async=st.booleans(),
)
def test_metering_always_runs_its_block_when_lenient(
    client: meterstream.MeterClient,
    logging_errors: list[Any],
    name: Any,
    customer: Any,
    identifier: Any,
    dimensions: Any,
    on_error: Any,
    value: Any,
    is_async: bool,
) -> None:
    name, customer, identifier, dimensions, on_error, value = map(
        made, (name, customer, identifier, dimensions, on_error, value)
    )
    ran: list[int] = []

    def make() -> Any:
        return client.metering(
            name, customer=customer, identifier=identifier, dimensions=dimensions, on_error=on_error
        )

    def run() -> str:
        block = make()  # never raises: the block must get its chance to run
        with block as usage:
            ran.append(1)
            usage.value = value
        return "result"

    async def run_async() -> str:
        async with make() as usage:
            ran.append(1)
            usage.value = value
        return "result"

    with meterstream.customer(CUS):
        check_outcome(client, (lambda: asyncio.run(run_async())) if is_async else run)
    if not client.settings.raise_errors:
        assert ran == [1]
    assert logging_errors == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"event_name": ""}, "event_name", id="event_name empty"),
        pytest.param({"event_name": "e" * 101}, "event_name", id="event_name 101 chars"),
        pytest.param({"event_name": ArrayLike()}, "event_name", id="event_name array"),
        pytest.param({"dimensions": {"model": 4}}, "dimensions['model']", id="dimension"),
        pytest.param({"customer": OrmObject()}, "customer", id="customer object"),
        pytest.param({"identifier": "a\nb"}, "identifier", id="identifier control char"),
        pytest.param({"on_error": "ignore"}, "on_error", id="on_error"),
    ],
)
def test_a_bad_metering_block_runs_counts_and_logs_or_raises_at_entry(
    client: meterstream.MeterClient,
    caplog: pytest.LogCaptureFixture,
    kwargs: dict[str, Any],
    field: str,
) -> None:
    args = dict(kwargs)
    name = args.pop("event_name", "calls")
    block = client.metering(name, **args)  # never raises
    ran: list[int] = []
    if client.settings.raise_errors:
        with pytest.raises(meterstream.InvalidEventError) as info:  # noqa: SIM117
            with meterstream.customer(CUS), block:
                ran.append(1)
        assert info.value.field == field
        assert ran == []  # refused at entry, before the block
        return
    with meterstream.customer(CUS), block as usage:
        ran.append(1)
        usage.add(2)
    assert ran == [1]
    assert client.flush(30)
    assert client.stats()["dropped_invalid"] == 1
    assert client.exporter.events == []  # type: ignore[attr-defined]
    assert any(field in r.getMessage() for r in caplog.records if r.name == "meterstream")


# -- customer() -----------------------------------------------------------------------------


@HOSTILE_SETTINGS
@given(customer_id=st.one_of(anything, st.sampled_from(["", "  ", "cus\x00", CUS])))
def test_customer_never_raises_and_its_records_name_the_field(
    client: meterstream.MeterClient, logging_errors: list[Any], customer_id: Any
) -> None:
    customer_id = made(customer_id)
    metered = client.meter("calls")(lambda: "result")

    def run() -> str:
        with meterstream.customer(customer_id) as entered:
            current = meterstream.current_customer()
            assert current is None or type(current) is str
            assert entered is None or type(entered) is str
            assert client.current_customer() == current
            client.record("calls")
            return metered()  # type: ignore[no-any-return]

    check_outcome(client, run)
    repr(meterstream.customer(customer_id))
    assert logging_errors == []


@pytest.mark.parametrize("customer_id", [123, b"cus_1", ["cus_1"], ArrayLike(), OrmObject()])
def test_a_non_string_customer_block_refuses_its_records(
    client: meterstream.MeterClient, customer_id: Any
) -> None:
    with meterstream.customer(customer_id):
        assert meterstream.current_customer() is None
        if client.settings.raise_errors:
            with pytest.raises(meterstream.InvalidEventError) as info:
                client.record("calls")
            assert info.value.field == "customer"
            assert "string" in str(info.value)
        else:
            client.record("calls")
    if not client.settings.raise_errors:
        assert client.flush(30)
        assert client.stats()["dropped_invalid"] == 1


# -- messages built from hostile objects ------------------------------------------------------


def test_invalid_event_error_names_an_unprintable_value_with_a_placeholder() -> None:
    obj = hostile_class(object, frozenset({"__repr__", "__str__"}))()
    error = meterstream.InvalidEventError("value", obj, "must be a number")
    assert str(error) == "value: must be a number (got <unprintable HostileObject>)"
    assert error.value is obj


def test_invalid_event_error_of_a_huge_int_says_how_long_it_is() -> None:
    error = meterstream.InvalidEventError("value", 10**100000, "too long")
    assert "int of 100001 digits" in str(error) or "int of 100000 digits" in str(error)


def test_on_missing_customer_raise_still_raises_whatever_raise_errors_says() -> None:
    client = meterstream.MeterClient(exporter="memory", on_missing_customer="raise")
    try:
        metered = client.meter("calls")(lambda: "result")
        with pytest.raises(meterstream.MissingCustomerError):
            metered()
        with pytest.raises(meterstream.MissingCustomerError), client.metering("calls"):
            pass
        with pytest.raises(meterstream.MissingCustomerError):
            client.record("calls")
    finally:
        client.shutdown(0)


def test_datetime_timestamps_still_work(client: meterstream.MeterClient) -> None:
    client.record("calls", customer=CUS, timestamp=datetime.now(timezone.utc))
    assert client.flush(30)
    assert len(client.exporter.events) == 1  # type: ignore[attr-defined]


def test_a_callable_constant_whose_truth_raises_is_used_as_a_callable(
    client: meterstream.MeterClient,
) -> None:
    class Doubler:
        def __call__(self, call: meterstream.Call) -> int:
            return 2

        def __bool__(self) -> bool:
            raise HostileError("truth")

    metered = client.meter("calls", value=Doubler(), identifier=Doubler())(lambda: "result")
    with meterstream.customer(CUS):
        check_outcome(client, metered)
