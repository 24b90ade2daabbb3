"""Validation: every input Stripe would refuse is refused first, naming the field.

One table of invalid inputs, run through ``record()`` on a ``raise_errors=True``
client (it raises) and on a default client (it drops, counts and logs once).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import IntEnum
from typing import Any, Callable

import pytest

import meterstream

CUS = "cus_valid"


def _now() -> float:
    return time.time()


INVALID: dict[str, Any] = {
    "event_name empty": pytest.param(lambda: {"event_name": ""}, "event_name", "1..100"),
    "event_name 101 chars": pytest.param(lambda: {"event_name": "e" * 101}, "event_name", "1..100"),
    "event_name not a str": pytest.param(lambda: {"event_name": 123}, "event_name", "string"),
    "identifier empty": (lambda: {"identifier": ""}, "identifier", "1..100"),
    "identifier 101 chars": (lambda: {"identifier": "i" * 101}, "identifier", "1..100"),
    "identifier not a str": (lambda: {"identifier": 42}, "identifier", "string"),
    "value bool": (lambda: {"value": True}, "value", "bool"),
    "value NaN": (lambda: {"value": math.nan}, "value", "finite"),
    "value inf": (lambda: {"value": math.inf}, "value", "finite"),
    "value -inf": (lambda: {"value": -math.inf}, "value", "finite"),
    "value int 16 digits": (lambda: {"value": 1234567890123456}, "value", "15 digits"),
    "value Decimal 16 digits": (
        lambda: {"value": Decimal("1.234567890123456")},
        "value",
        "15 digits",
    ),
    "value numeric str 16 digits": (
        lambda: {"value": "1234567890123456"},
        "value",
        "15 digits",
    ),
    "value Decimal NaN": (lambda: {"value": Decimal("NaN")}, "value", "finite"),
    "value str not a number": (lambda: {"value": "abc"}, "value", "not a number"),
    "value str NaN": (lambda: {"value": "nan"}, "value", "finite"),
    "value empty str": (lambda: {"value": ""}, "value", "not a number"),
    "value None": (lambda: {"value": None}, "value", "NoneType"),
    "value list": (lambda: {"value": [1]}, "value", "list"),
    "customer not a str": (lambda: {"customer": 123}, "customer", "string"),
    "customer whitespace-padded": pytest.param(
        lambda: {"customer": " cus_1 "}, "customer", "whitespace"
    ),
    "dimensions not a dict": (lambda: {"dimensions": ["model"]}, "dimensions", "dict"),
    "dimensions value not a str": (
        lambda: {"dimensions": {"model": 4}},
        "dimensions['model']",
        "must be a string",
    ),
    "dimensions key not a str": (lambda: {"dimensions": {4: "x"}}, "dimensions", "keys"),
    "dimensions key empty": (lambda: {"dimensions": {"": "x"}}, "dimensions", "keys"),
    "dimensions clash with customer key": (
        lambda: {"dimensions": {"stripe_customer_id": "cus_other"}},
        "dimensions['stripe_customer_id']",
        "clashes",
    ),
    "dimensions clash with value key": (
        lambda: {"dimensions": {"value": "7"}},
        "dimensions['value']",
        "clashes",
    ),
    "timestamp naive datetime": (
        lambda: {"timestamp": datetime.now()},
        "timestamp",
        "timezone-aware",
    ),
    "timestamp too old": (
        lambda: {"timestamp": _now() - 36 * 24 * 3600},
        "timestamp",
        "35 days",
    ),
    "timestamp too old datetime": (
        lambda: {"timestamp": datetime.now(timezone.utc) - timedelta(days=36)},
        "timestamp",
        "35 days",
    ),
    "timestamp too far in future": (
        lambda: {"timestamp": _now() + 10 * 60},
        "timestamp",
        "5 minutes",
    ),
    "timestamp str": (lambda: {"timestamp": "2024-06-01T12:00:00Z"}, "timestamp", "datetime"),
    "timestamp bool": (lambda: {"timestamp": True}, "timestamp", "datetime"),
    "timestamp NaN": (lambda: {"timestamp": math.nan}, "timestamp", "finite"),
}


def _params() -> list[Any]:
    out = []
    for case_id, case in INVALID.items():
        if isinstance(case, tuple) and not hasattr(case, "marks"):
            out.append(pytest.param(*case, id=case_id))
        else:
            out.append(pytest.param(*case.values, id=case_id, marks=case.marks))
    return out


PARAMS = _params()


def record_call(kwargs: dict[str, Any]) -> Callable[[], None]:
    args = {"event_name": "calls", "value": 1, "customer": CUS}
    args.update(kwargs)
    name = args.pop("event_name")
    value = args.pop("value")

    def call() -> None:
        meterstream.record(name, value, **args)

    return call


def sent(client: meterstream.MeterClient) -> list[dict[str, Any]]:
    assert client.flush(5.0)
    return list(client.exporter.events)  # type: ignore[attr-defined]


@pytest.fixture
def strict_client() -> Iterator[meterstream.MeterClient]:
    client = meterstream.configure(exporter="memory", raise_errors=True)
    yield client
    client.shutdown(0)


# -- raise_errors=True -----------------------------------------------------------------


@pytest.mark.parametrize(("make_kwargs", "field", "fragment"), PARAMS)
def test_invalid_input_raises_naming_the_field(
    strict_client: meterstream.MeterClient,
    make_kwargs: Callable[[], dict[str, Any]],
    field: str,
    fragment: str,
) -> None:
    with pytest.raises(meterstream.InvalidEventError) as info:
        record_call(make_kwargs())()
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert fragment in str(info.value)
    assert sent(strict_client) == []
    assert strict_client.stats()["recorded"] == 0


def test_invalid_event_error_carries_value_and_repr(strict_client: meterstream.MeterClient) -> None:
    with pytest.raises(meterstream.InvalidEventError) as info:
        meterstream.record("calls", "abc", customer=CUS)
    assert info.value.field == "value"
    assert info.value.value == "abc"
    assert str(info.value) == "value: is not a number (got 'abc')"
    assert isinstance(info.value, ValueError)


def test_long_value_repr_is_shortened_in_the_message(
    strict_client: meterstream.MeterClient,
) -> None:
    with pytest.raises(meterstream.InvalidEventError) as info:
        meterstream.record("calls", 1, customer=CUS, identifier="x" * 500)
    assert info.value.value == "x" * 500
    assert len(str(info.value)) < 200


def test_dimension_clashing_with_a_configured_payload_key() -> None:
    client = meterstream.configure(
        exporter="memory",
        raise_errors=True,
        payload_keys={"api_calls": {"customer": "account", "value": "count"}},
    )
    with pytest.raises(meterstream.InvalidEventError) as info:
        meterstream.record("api_calls", customer=CUS, dimensions={"account": "a"})
    assert info.value.field == "dimensions['account']"
    with pytest.raises(meterstream.InvalidEventError):
        meterstream.record("api_calls", customer=CUS, dimensions={"count": "2"})
    # The default keys are free to be dimensions of an event that does not use them.
    meterstream.record("api_calls", customer=CUS, dimensions={"value": "v"})
    assert sent(client)[0]["payload"] == {"account": CUS, "count": "1", "value": "v"}


def test_decorated_call_raises_after_the_function_ran(
    strict_client: meterstream.MeterClient,
) -> None:
    ran: list[bool] = []

    @meterstream.meter("calls", value=lambda call: "not a number")
    def fn() -> str:
        ran.append(True)
        return "result"

    with meterstream.customer(CUS), pytest.raises(meterstream.InvalidEventError) as info:
        fn()
    assert ran == [True]
    assert info.value.field == "value"


def test_value_callable_that_raises_is_an_invalid_event(
    strict_client: meterstream.MeterClient,
) -> None:
    @meterstream.meter("calls", value=lambda call: call.result["missing"])
    def fn() -> dict[str, int]:
        return {}

    with meterstream.customer(CUS), pytest.raises(meterstream.InvalidEventError) as info:
        fn()
    assert info.value.field == "value"
    assert isinstance(info.value.__cause__, KeyError)


def test_customer_callable_that_raises_is_named_in_the_error(
    strict_client: meterstream.MeterClient,
) -> None:
    @meterstream.meter("calls", customer=lambda call: call.kwargs["account"])
    def fn() -> None:
        return None

    with pytest.raises(meterstream.InvalidEventError) as info:
        fn()
    assert info.value.field == "customer"
    assert isinstance(info.value.__cause__, KeyError)


def test_failing_customer_callable_is_named_even_when_value_is_a_callable(
    strict_client: meterstream.MeterClient,
) -> None:
    @meterstream.meter("calls", value=lambda call: 1, customer=lambda call: call.kwargs["account"])
    def fn() -> None:
        return None

    with pytest.raises(meterstream.InvalidEventError) as info:
        fn()
    assert info.value.field == "customer"


def test_failing_identifier_callable_is_named_even_when_value_is_a_callable(
    strict_client: meterstream.MeterClient,
) -> None:
    @meterstream.meter("calls", value=lambda call: 1, identifier=lambda call: call.kwargs["rid"])
    def fn() -> None:
        return None

    with meterstream.customer(CUS), pytest.raises(meterstream.InvalidEventError) as info:
        fn()
    assert info.value.field == "identifier"


def test_customer_callable_returning_a_non_string_is_an_invalid_event(
    strict_client: meterstream.MeterClient,
) -> None:
    @meterstream.meter("calls", customer=lambda call: 42)
    def fn() -> None:
        return None

    with pytest.raises(meterstream.InvalidEventError) as info:
        fn()
    assert info.value.field == "customer"


def test_identifier_callable_returning_too_long_an_id_is_an_invalid_event(
    strict_client: meterstream.MeterClient,
) -> None:
    @meterstream.meter("calls", identifier=lambda call: "r" * 101)
    def fn() -> None:
        return None

    with meterstream.customer(CUS), pytest.raises(meterstream.InvalidEventError) as info:
        fn()
    assert info.value.field == "identifier"


def test_usage_value_set_to_garbage_raises_at_block_exit(
    strict_client: meterstream.MeterClient,
) -> None:
    with pytest.raises(meterstream.InvalidEventError) as info:  # noqa: SIM117
        with meterstream.customer(CUS), meterstream.metering("gpu") as usage:
            usage.value = "lots"
    assert info.value.field == "value"


# -- raise_errors=False (the default) ---------------------------------------------------------


@pytest.mark.parametrize(("make_kwargs", "field", "fragment"), PARAMS)
def test_invalid_input_is_dropped_counted_and_logged(
    memory_client: meterstream.MeterClient,
    caplog: pytest.LogCaptureFixture,
    make_kwargs: Callable[[], dict[str, Any]],
    field: str,
    fragment: str,
) -> None:
    with caplog.at_level(logging.WARNING, logger="meterstream"):
        record_call(make_kwargs())()
    assert sent(memory_client) == []
    stats = memory_client.stats()
    assert stats["dropped_invalid"] == 1
    assert stats["dropped"] == 1
    assert stats["recorded"] == 0
    (line,) = [r for r in caplog.records if r.name == "meterstream"]
    assert line.levelno == logging.WARNING
    assert field in line.getMessage()
    assert fragment in line.getMessage()


def test_many_invalid_records_log_one_warning(
    memory_client: meterstream.MeterClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="meterstream"):
        for i in range(100):
            meterstream.record("calls", math.nan if i % 2 else "abc", customer=CUS)
    lines = [r for r in caplog.records if r.name == "meterstream"]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    assert memory_client.stats()["dropped_invalid"] == 100


def test_each_drop_reason_is_logged_once(
    memory_client: meterstream.MeterClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="meterstream"):
        for _ in range(10):
            meterstream.record("calls", "abc", customer=CUS)  # invalid
            meterstream.record("calls")  # no customer
    messages = [r.getMessage() for r in caplog.records if r.name == "meterstream"]
    assert len(messages) == 2
    assert sum("invalid" in m for m in messages) == 1
    assert sum("no customer" in m for m in messages) == 1


def test_a_valid_record_after_invalid_ones_is_still_delivered(
    memory_client: meterstream.MeterClient,
) -> None:
    meterstream.record("calls", math.inf, customer=CUS)
    meterstream.record("calls", 2, customer=CUS)
    assert [e["payload"]["value"] for e in sent(memory_client)] == ["2"]


def test_metered_call_returns_its_result_when_the_value_is_invalid(
    memory_client: meterstream.MeterClient, caplog: pytest.LogCaptureFixture
) -> None:
    @meterstream.meter("calls", value=lambda call: math.nan)
    def fn(x: int) -> int:
        return x * 2

    with caplog.at_level(logging.WARNING, logger="meterstream"), meterstream.customer(CUS):
        results = [fn(i) for i in range(10)]
    assert results == [i * 2 for i in range(10)]
    assert sent(memory_client) == []
    assert memory_client.stats()["dropped_invalid"] == 10
    assert len([r for r in caplog.records if r.name == "meterstream"]) == 1


def test_metered_call_returns_its_result_when_the_value_callable_raises(
    memory_client: meterstream.MeterClient,
) -> None:
    @meterstream.meter("calls", value=lambda call: 1 / 0)
    def fn() -> str:
        return "fine"

    with meterstream.customer(CUS):
        assert fn() == "fine"
    assert memory_client.stats()["dropped_invalid"] == 1


def test_async_metered_call_returns_its_result_when_the_value_is_invalid(
    memory_client: meterstream.MeterClient,
) -> None:
    import asyncio

    @meterstream.meter("calls", value=lambda call: "x")
    async def fn() -> str:
        return "fine"

    async def main() -> str:
        with meterstream.customer(CUS):
            return await fn()

    assert asyncio.run(main()) == "fine"
    assert memory_client.stats()["dropped_invalid"] == 1


# -- values that are accepted, and how they are written --------------------------------------


class Units(IntEnum):
    TEN = 10


VALID_VALUES = [
    pytest.param(0.1 + 0.2, "0.3", id="0.1+0.2"),
    pytest.param(1e14, "100000000000000", id="1e14"),
    pytest.param(25, "25", id="int"),
    pytest.param(0, "0", id="zero"),
    pytest.param(-0.0, "0", id="negative zero"),
    pytest.param(Decimal("1.50"), "1.5", id="Decimal trailing zero"),
    pytest.param(Decimal("1E+3"), "1000", id="Decimal exponent"),
    pytest.param(Decimal("0.000001"), "0.000001", id="Decimal small"),
    pytest.param(10**14, "100000000000000", id="10**14 trailing zeros"),
    pytest.param(999_999_999_999_999, "999999999999999", id="15 digits int"),
    pytest.param(Decimal("12345678901234.5"), "12345678901234.5", id="15 digits Decimal"),
    pytest.param(12.5, "12.5", id="float"),
    pytest.param(1e-7, "0.0000001", id="small float without exponent"),
    pytest.param(1 / 3, "0.333333333333333", id="1/3"),
    pytest.param(123456789012345.6, "123456789012346", id="float rounded to 15 digits"),
    pytest.param(2.0, "2", id="whole float"),
    pytest.param("12.50", "12.5", id="numeric str"),
    pytest.param(" 7 ", "7", id="numeric str with spaces"),
    pytest.param("1e3", "1000", id="numeric str exponent"),
    pytest.param(Units.TEN, "10", id="IntEnum"),
]


@pytest.mark.parametrize(("value", "expected"), VALID_VALUES)
def test_valid_value_is_written_as_a_plain_decimal_string(
    strict_client: meterstream.MeterClient, value: Any, expected: str
) -> None:
    meterstream.record("calls", value, customer=CUS)
    (event,) = sent(strict_client)
    assert event["payload"]["value"] == expected


@pytest.mark.parametrize(("value", "expected"), VALID_VALUES)
def test_valid_constant_value_of_a_decorator_is_written_the_same_way(
    strict_client: meterstream.MeterClient, value: Any, expected: str
) -> None:
    @meterstream.meter("calls", value=value)
    def fn() -> None:
        return None

    with meterstream.customer(CUS):
        fn()
    (event,) = sent(strict_client)
    assert event["payload"]["value"] == expected


@pytest.mark.parametrize(
    "make_timestamp",
    [
        pytest.param(lambda: _now() - 34 * 24 * 3600, id="34 days ago"),
        pytest.param(lambda: _now() + 4 * 60, id="4 minutes ahead"),
        pytest.param(lambda: datetime.now(timezone.utc), id="aware now"),
        pytest.param(lambda: int(_now()), id="int seconds"),
    ],
)
def test_timestamps_inside_the_window_are_accepted(
    strict_client: meterstream.MeterClient, make_timestamp: Callable[[], Any]
) -> None:
    meterstream.record("calls", customer=CUS, timestamp=make_timestamp())
    assert len(sent(strict_client)) == 1


def test_event_names_and_identifiers_of_100_chars_are_accepted(
    strict_client: meterstream.MeterClient,
) -> None:
    meterstream.record("e" * 100, customer=CUS, identifier="i" * 100)
    (event,) = sent(strict_client)
    assert event["event_name"] == "e" * 100
    assert event["identifier"] == "i" * 100


# -- decoration time ------------------------------------------------------------------------------

DECORATION_ERRORS = [
    pytest.param({"event_name": ""}, "event_name", id="event_name empty"),
    pytest.param({"event_name": "e" * 101}, "event_name", id="event_name 101 chars"),
    pytest.param({"event_name": None}, "event_name", id="event_name None"),
    pytest.param({"value": True}, "value", id="value bool"),
    pytest.param({"value": math.nan}, "value", id="value NaN"),
    pytest.param({"value": math.inf}, "value", id="value inf"),
    pytest.param({"value": 1234567890123456}, "value", id="value 16 digits"),
    pytest.param({"value": Decimal("1234567890.123456")}, "value", id="Decimal 16 digits"),
    pytest.param({"value": "abc"}, "value", id="value str"),
    pytest.param({"value": None}, "value", id="value None"),
    pytest.param({"customer": 123}, "customer", id="customer int"),
    pytest.param({"customer": ""}, "customer", id="customer empty"),
    pytest.param({"customer": " cus_1 "}, "customer", id="customer padded"),
    pytest.param({"identifier": ""}, "identifier", id="identifier empty"),
    pytest.param({"identifier": "i" * 101}, "identifier", id="identifier 101 chars"),
    pytest.param({"identifier": 7}, "identifier", id="identifier int"),
    pytest.param({"dimensions": ["model"]}, "dimensions", id="dimensions list"),
    pytest.param({"dimensions": {"model": 4}}, "dimensions['model']", id="dimension value int"),
    pytest.param({"dimensions": {5: "x"}}, "dimensions", id="dimension key int"),
    pytest.param({"on_error": "ignore"}, "on_error", id="on_error unknown"),
]


@pytest.mark.parametrize(("kwargs", "field"), DECORATION_ERRORS)
def test_bad_constant_given_to_meter_raises_at_decoration_time(
    kwargs: dict[str, Any], field: str
) -> None:
    args = dict(kwargs)
    name = args.pop("event_name", "calls")
    with pytest.raises(meterstream.InvalidEventError) as info:
        meterstream.meter(name, **args)
    assert info.value.field == field


@pytest.mark.parametrize(("kwargs", "field"), DECORATION_ERRORS)
def test_bad_constant_given_to_client_meter_raises_at_decoration_time(
    memory_client: meterstream.MeterClient, kwargs: dict[str, Any], field: str
) -> None:
    args = dict(kwargs)
    name = args.pop("event_name", "calls")
    with pytest.raises(meterstream.InvalidEventError) as info:
        memory_client.meter(name, **args)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"event_name": ""}, "event_name", id="event_name empty"),
        pytest.param({"event_name": "e" * 101}, "event_name", id="event_name 101 chars"),
        pytest.param({"dimensions": {"model": 4}}, "dimensions['model']", id="dimension"),
        pytest.param({"on_error": "ignore"}, "on_error", id="on_error"),
    ],
)
def test_bad_constant_given_to_metering_raises_at_entry(
    strict_client: meterstream.MeterClient, kwargs: dict[str, Any], field: str
) -> None:
    # Not at construction: with raise_errors=False the block must still run
    # (tests/test_hostile_input.py), so the client decides when it is entered.
    args = dict(kwargs)
    name = args.pop("event_name", "calls")
    block = meterstream.metering(name, **args)
    ran = []
    with pytest.raises(meterstream.InvalidEventError) as info:  # noqa: SIM117
        with meterstream.customer(CUS), block:
            ran.append(1)
    assert info.value.field == field
    assert ran == []


def test_decoration_errors_ignore_raise_errors_false(
    memory_client: meterstream.MeterClient,
) -> None:
    assert memory_client.settings.raise_errors is False
    with pytest.raises(meterstream.InvalidEventError):
        meterstream.meter("calls", value=math.nan)


def test_a_falsy_non_string_customer_is_invalid_not_missing() -> None:
    client = meterstream.MeterClient(exporter="memory", raise_errors=True)
    with pytest.raises(meterstream.InvalidEventError) as info:
        client.record("calls", customer=0)  # type: ignore[arg-type]
    assert info.value.field == "customer"
    client.shutdown(0)


def test_a_customer_block_with_an_unbillable_id_refuses_its_records() -> None:
    client = meterstream.MeterClient(exporter="memory")
    metered = client.meter("calls")(lambda: "result")
    with meterstream.customer(" cus_1 "):
        assert meterstream.current_customer() == " cus_1 "
        assert metered() == "result"
        client.record("calls")
    assert client.flush(5)
    assert client.exporter.events == []  # type: ignore[attr-defined]
    assert client.stats()["dropped_invalid"] == 2
    strict = meterstream.MeterClient(exporter="memory", raise_errors=True)
    with (
        meterstream.customer(" cus_1 "),
        pytest.raises(meterstream.InvalidEventError, match="whitespace"),
    ):
        strict.record("calls")
    client.shutdown(0)
    strict.shutdown(0)
