"""Each field, given a hostile object, gets the error naming THAT field (issue 24, item 4).

``tests/record/test_hostile_input.py`` throws hostile objects at every field
at once and asks for an error naming *a* field. Here one field at a time
gets the object, the others stay valid, and:

- with ``raise_errors=True`` the call raises nothing (the object passed as
  that field), or ``InvalidEventError`` naming exactly that field, never
  another one and never the object's own exception;
- with ``raise_errors=False`` the same call never raises, and
  ``dropped_invalid`` grows exactly when the strict call raised.

Through ``record()``, ``@meter`` (constants, refused at decoration, and
callables, at the call) and ``metering()``. Real numpy arrays and scalars
are among the objects. And every setting, given the same objects, is a
``ConfigurationError`` naming it, or accepted.
"""

from __future__ import annotations

import asyncio
import math
import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, NoReturn

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import meterstream
from meterstream._config.settings import SETTING_NAMES

CUS = "cus_named"


class HostileError(Exception):
    """What the hostile dunders raise: never to reach the caller."""


def _boom(*args: Any, **kwargs: Any) -> NoReturn:
    raise HostileError("hostile")


DUNDERS = (
    "__repr__",
    "__str__",
    "__format__",
    "__eq__",
    "__hash__",
    "__bool__",
    "__len__",
    "__iter__",
    "__int__",
    "__float__",
    "__index__",
    "__getattr__",
)
#: A text valid as every text field: event name, customer, identifier, dimension.
TEXT = "cus_7"


def raising(base: type, dunders: frozenset[str]) -> Any:
    """An instance of a *base* subclass whose *dunders* raise."""
    namespace: dict[str, Any] = dict.fromkeys(dunders, _boom)
    if base is str:
        namespace.update(strip=_boom, isprintable=_boom, isspace=_boom, encode=_boom)
    cls = type(f"Raising{base.__name__.title()}", (base,), namespace)
    if base is object:
        return cls()
    return cls({int: 7, str: TEXT, float: 2.5, Decimal: Decimal("3")}[base])


#: name -> how to make the object (made in the test body, never earlier).
OBJECTS: dict[str, Callable[[], Any]] = {}
for _base in (object, str, int):
    for _dunder in DUNDERS:
        OBJECTS[f"{_base.__name__}-raising-{_dunder}"] = lambda base=_base, dunder=_dunder: raising(
            base, frozenset({dunder})
        )
    OBJECTS[f"{_base.__name__}-raising-all"] = lambda base=_base: raising(base, frozenset(DUNDERS))
OBJECTS.update(
    {
        "numpy-array": lambda: np.array([1, 2]),
        "numpy-text-array": lambda: np.array([TEXT, TEXT]),
        "numpy-0d-array": lambda: np.array(5),
        "numpy-int64": lambda: np.int64(5),
        "numpy-float64-nan": lambda: np.float64("nan"),
        "numpy-float32": lambda: np.float32(2.5),
        "numpy-bool": lambda: np.bool_(True),
        "numpy-str": lambda: np.str_(TEXT),
        "decimal-nan": lambda: Decimal("NaN"),
        "decimal-snan": lambda: Decimal("sNaN"),
        "decimal-huge": lambda: Decimal("1E+999999999"),
        "true": lambda: True,
        "bytes": lambda: TEXT.encode(),
        "bytearray": lambda: bytearray(TEXT.encode()),
        "huge-int": lambda: 10**5000,
        "huge-negative-int": lambda: -(10**5000),
        "int-20-digits": lambda: 10**20,
        "float-nan": lambda: math.nan,
        "float-1e25": lambda: 1e25,
        "complex": lambda: complex(1, 2),
        "empty-text": lambda: "",
        "list": lambda: [TEXT],
        "plain-object": object,
    }
)


def _hashable(obj: Any) -> bool:
    """Only what hashes can be a dict key: the rest cannot even be passed as one."""
    try:
        hash(obj)
    except Exception:
        return False
    return True


# The fields, as (entry point, field): how the object is passed, and the field expected.
CASES = [
    ("record", "event_name"),
    ("record", "value"),
    ("record", "customer"),
    ("record", "timestamp"),
    ("record", "identifier"),
    ("record", "dimensions"),
    ("record", "dimension_key"),
    ("record", "dimension_value"),
    ("meter", "event_name"),
    ("meter", "value"),
    ("meter", "customer"),
    ("meter", "identifier"),
    ("meter", "dimensions"),
    ("meter", "dimension_key"),
    ("meter", "dimension_value"),
    ("meter_callable", "value"),
    ("meter_callable", "customer"),
    ("meter_callable", "identifier"),
    ("metering", "event_name"),
    ("metering", "customer"),
    ("metering", "identifier"),
    ("metering", "dimensions"),
    ("metering", "dimension_key"),
    ("metering", "dimension_value"),
    ("metering", "value"),
]


def _arguments(field: str, obj: Any) -> dict[str, Any]:
    """Valid arguments for one use, with *obj* as *field*."""
    args: dict[str, Any] = {"event_name": "calls", "customer": CUS, "dimensions": {"model": "m1"}}
    if field == "dimension_key":
        args["dimensions"] = {obj: "m1"}
    elif field == "dimension_value":
        args["dimensions"] = {"model": obj}
    else:
        args[field] = obj
    return args


def _use(client: meterstream.MeterClient, entry: str, field: str, obj: Any) -> None:
    """One use through *entry* with *obj* as *field*."""
    args = _arguments(field, obj)
    name = args.pop("event_name")
    if entry == "record":
        client.record(name, args.pop("value", 1), **args)
    elif entry == "meter":
        client.meter(name, **args)(lambda: None)()
    elif entry == "meter_callable":
        # The callable returns the object when the call ends.
        given = {field: lambda call: obj}
        if field != "customer":
            given["customer"] = CUS
        client.meter(name, dimensions={"model": "m1"}, **given)(lambda: None)()
    else:
        value = args.pop("value", 2)
        with client.metering(name, **args) as usage:
            usage.value = value


def _expected(field: str) -> str:
    return "dimensions" if field.startswith("dimension") else field


@pytest.fixture
def clients() -> Any:
    made = []

    def make(raise_errors: bool) -> meterstream.MeterClient:
        client = meterstream.MeterClient(exporter="memory", raise_errors=raise_errors)
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(0)


def _strict_outcome(client: meterstream.MeterClient, entry: str, field: str, obj: Any) -> bool:
    """True when the use was refused naming *field*; False when it was accepted."""
    try:
        _use(client, entry, field, obj)
    except meterstream.InvalidEventError as exc:
        assert exc.field.split("[")[0] == _expected(field), (exc.field, str(exc))
        text = str(exc)  # the message itself survives the object's dunders
        assert text.startswith(exc.field)
        repr(exc)
        return True
    return False


def _lenient_outcome(client: meterstream.MeterClient, entry: str, field: str, obj: Any) -> bool:
    before = client.stats()["dropped_invalid"]
    _use(client, entry, field, obj)  # never raises
    dropped = client.stats()["dropped_invalid"] - before
    assert dropped in (0, 1)
    return dropped == 1


@pytest.mark.parametrize("name", sorted(OBJECTS))
@pytest.mark.parametrize(("entry", "field"), CASES, ids=[f"{e}-{f}" for e, f in CASES])
def test_a_hostile_object_as_one_field_is_refused_naming_that_field(
    clients: Any, entry: str, field: str, name: str
) -> None:
    if field == "dimension_key" and not _hashable(OBJECTS[name]()):
        pytest.skip("cannot be a dict key")
    refused = _strict_outcome(clients(True), entry, field, OBJECTS[name]())
    if entry == "meter" and refused:
        # A constant is refused when decorating, whatever raise_errors says.
        with pytest.raises(meterstream.InvalidEventError) as info:
            _use(clients(False), entry, field, OBJECTS[name]())
        assert info.value.field.split("[")[0] == _expected(field)
        return
    assert _lenient_outcome(clients(False), entry, field, OBJECTS[name]()) == refused


HYPOTHESIS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@HYPOTHESIS
@given(
    case=st.sampled_from(CASES),
    base=st.sampled_from([object, str, int, float, Decimal]),
    dunders=st.frozensets(st.sampled_from(DUNDERS), min_size=1),
)
def test_any_set_of_raising_dunders_names_the_field(
    clients: Any, case: tuple[str, str], base: type, dunders: frozenset[str]
) -> None:
    entry, field = case
    assume(field != "dimension_key" or _hashable(raising(base, dunders)))
    refused = _strict_outcome(clients(True), entry, field, raising(base, dunders))
    if entry != "meter":
        assert _lenient_outcome(clients(False), entry, field, raising(base, dunders)) == refused


def test_an_async_metering_block_names_the_value_it_was_given(clients: Any) -> None:
    client = clients(True)

    async def block() -> None:
        async with client.metering("calls", customer=CUS) as usage:
            usage.value = np.array([1, 2])

    with pytest.raises(meterstream.InvalidEventError) as info:
        asyncio.run(block())
    assert info.value.field == "value"


# -- every setting --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OBJECTS))
@pytest.mark.parametrize("setting", SETTING_NAMES)
def test_any_object_as_any_setting_is_refused_naming_it_or_accepted(
    setting: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a text accepted as a path lands here
    for variable in [v for v in os.environ if v.startswith(("METERSTREAM_", "STRIPE_"))]:
        monkeypatch.delenv(variable)
    try:
        client = meterstream.MeterClient(**{setting: OBJECTS[name]()})
    except meterstream.ConfigurationError as exc:
        assert str(exc).startswith(f"{setting}: "), str(exc)
    else:
        client.shutdown(0)
