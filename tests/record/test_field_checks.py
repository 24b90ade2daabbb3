"""Record-time checks of what the encoder must be able to write.

Values: whatever passes validation is written as a plain decimal string of at
most ``MAX_VALUE_CHARS`` characters (sign not counted). Names, identifiers and
customers: not blank, and no control or other unprintable characters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

import meterstream
from meterstream._record import checks as _checks
from meterstream._record import events as _events

CUS = "cus_checks"


@pytest.fixture
def strict() -> Iterator[meterstream.MeterClient]:
    client = meterstream.configure(exporter="memory", raise_errors=True)
    yield client
    client.shutdown(0)


@pytest.fixture
def lenient() -> Iterator[meterstream.MeterClient]:
    client = meterstream.configure(exporter="memory")
    yield client
    client.shutdown(0)


def written(client: meterstream.MeterClient) -> list[str]:
    assert client.flush(30)
    return [e["payload"]["value"] for e in client.exporter.events]  # type: ignore[attr-defined]


# -- values: the length of the written form ------------------------------------------------

TOO_LONG = [
    pytest.param(Decimal("1E+999999999"), id="Decimal 1E+999999999"),
    pytest.param(Decimal("1E+100000"), id="Decimal 1E+100000"),
    pytest.param(Decimal("-1E+100000"), id="Decimal -1E+100000"),
    pytest.param(Decimal("1E-100000"), id="Decimal 1E-100000"),
    pytest.param(Decimal("1E-999999999"), id="Decimal 1E-999999999"),
    pytest.param(Decimal("1E+40"), id="Decimal 1E+40"),
    pytest.param(Decimal("1.5E-39"), id="Decimal 1.5E-39"),
    pytest.param("1E+999999999", id="str 1E+999999999"),
    pytest.param("1e400", id="str 1e400"),
    pytest.param(10**40, id="int 10**40"),
    pytest.param(-(10**40), id="int -10**40"),
    pytest.param(10**100000, id="int 10**100000"),
    pytest.param(1e40, id="float 1e40"),
    pytest.param(1e300, id="float 1e300"),
    pytest.param(-1.7976931348623157e308, id="float -max"),
    pytest.param(5e-324, id="float min subnormal"),
    pytest.param(1e-39, id="float 1e-39"),
]


@pytest.mark.parametrize("value", TOO_LONG)
def test_a_value_too_long_to_write_is_refused_naming_the_field(
    strict: meterstream.MeterClient, value: Any
) -> None:
    with pytest.raises(meterstream.InvalidEventError) as info:
        meterstream.record("calls", value, customer=CUS)
    assert info.value.field == "value"
    assert info.value.value is value
    assert "characters" in str(info.value) or "digits" in str(info.value)
    assert str(info.value).startswith("value: ")


@pytest.mark.parametrize("value", TOO_LONG)
def test_a_value_too_long_is_dropped_and_counted_without_raise_errors(
    lenient: meterstream.MeterClient, value: Any
) -> None:
    meterstream.record("calls", value, customer=CUS)
    meterstream.record("calls", 2, customer=CUS)
    assert written(lenient) == ["2"]
    assert lenient.stats()["dropped_invalid"] == 1


@pytest.mark.parametrize("value", TOO_LONG)
def test_a_constant_too_long_is_refused_at_decoration_time(value: Any) -> None:
    with pytest.raises(meterstream.InvalidEventError) as info:
        meterstream.meter("calls", value=value)
    assert info.value.field == "value"


FITS = [
    pytest.param(Decimal("9.99999999999999E+14"), "9" * 15, id="largest 15-digit"),
    pytest.param(Decimal("1E+14"), "1" + "0" * 14, id="Decimal 1E+14"),
    pytest.param(-(10**15 - 1), "-" + "9" * 15, id="int -(10**15 - 1)"),
    pytest.param(Decimal("1E-38"), "0." + "0" * 37 + "1", id="Decimal 1E-38"),
    pytest.param(
        Decimal("1.23456789012345E-24"), "0." + "0" * 23 + "123456789012345", id="15 digits small"
    ),
    pytest.param(1e14, "1" + "0" * 14, id="float 1e14"),
    pytest.param(999999999999999.0, "9" * 15, id="float 999999999999999"),
    pytest.param(1e-38, "0." + "0" * 37 + "1", id="float 1e-38"),
    pytest.param(1.5e14, "150000000000000", id="float 1.5e14"),
    pytest.param(Decimal("0E+100000"), "0", id="zero with a huge exponent"),
    pytest.param(Decimal("-0E-100000"), "0", id="negative zero with a tiny exponent"),
    pytest.param("1e14", "1" + "0" * 14, id="numeric str 1e14"),
]


@pytest.mark.parametrize(("value", "expected"), FITS)
def test_values_at_the_bound_are_accepted_and_written(
    strict: meterstream.MeterClient, value: Any, expected: str
) -> None:
    meterstream.record("calls", value, customer=CUS)
    assert written(strict) == [expected]
    assert len(expected.lstrip("-")) <= _checks.MAX_VALUE_CHARS


@pytest.mark.parametrize(("value", "expected"), FITS)
def test_the_stream_body_writes_the_same_value(value: Any, expected: str) -> None:
    checked = _checks.check_value(value)
    raw = [("calls", CUS, checked, 1_700_000_000.0, 1, None)]
    body = _events.EventBatch(raw, lambda name: ("stripe_customer_id", "value"), "p_").to_json()
    assert json.loads(body)["events"][0]["payload"]["value"] == expected


# -- names, identifiers, customers ----------------------------------------------------------

BAD_TEXT = [
    pytest.param("   ", "blank", id="blank"),
    pytest.param("\t", "blank", id="tab only"),
    pytest.param("api\ncalls", "control", id="newline"),
    pytest.param("api\x00calls", "control", id="NUL"),
    pytest.param("api\x1bcalls", "control", id="escape"),
    pytest.param("api\x7fcalls", "control", id="DEL"),
    pytest.param("api\x85calls", "control", id="C1 NEL"),
    pytest.param("api\u200bcalls", "control", id="zero-width space"),
    pytest.param("api\u2028calls", "control", id="line separator"),
    pytest.param("api\ud800calls", "control", id="lone surrogate"),
]


@pytest.mark.parametrize(("text", "fragment"), BAD_TEXT)
@pytest.mark.parametrize("field", ["event_name", "identifier", "customer"])
def test_blank_or_unprintable_text_is_refused_at_record_time(
    strict: meterstream.MeterClient, field: str, text: str, fragment: str
) -> None:
    kwargs: dict[str, Any] = {"customer": CUS}
    name = "calls"
    if field == "event_name":
        name = text
    else:
        kwargs[field] = text
    with pytest.raises(meterstream.InvalidEventError) as info:
        meterstream.record(name, 1, **kwargs)
    assert info.value.field == field
    assert fragment in str(info.value)


@pytest.mark.parametrize(("text", "fragment"), BAD_TEXT)
@pytest.mark.parametrize("field", ["event_name", "identifier", "customer"])
def test_blank_or_unprintable_constants_are_refused_at_decoration_time(
    field: str, text: str, fragment: str
) -> None:
    kwargs: dict[str, Any] = {}
    name = "calls"
    if field == "event_name":
        name = text
    else:
        kwargs[field] = text
    with pytest.raises(meterstream.InvalidEventError) as info:
        meterstream.meter(name, **kwargs)
    assert info.value.field == field


@pytest.mark.parametrize("field", ["identifier", "customer"])
def test_unprintable_text_from_a_callable_is_refused(
    strict: meterstream.MeterClient, field: str
) -> None:
    kwargs: dict[str, Any] = {field: lambda call: "x\ny"}

    @meterstream.meter("calls", **kwargs)
    def fn() -> str:
        return "result"

    with meterstream.customer(CUS), pytest.raises(meterstream.InvalidEventError) as info:
        fn()
    assert info.value.field == field


@pytest.mark.parametrize(("text", "fragment"), BAD_TEXT)
def test_a_customer_block_with_unprintable_text_refuses_its_records(
    lenient: meterstream.MeterClient, text: str, fragment: str
) -> None:
    metered = meterstream.meter("calls")(lambda: "result")
    with meterstream.customer("cus" + text):
        assert metered() == "result"
        meterstream.record("calls")
    assert written(lenient) == []
    assert lenient.stats()["dropped_invalid"] == 2


def test_printable_unicode_is_accepted(strict: meterstream.MeterClient) -> None:
    meterstream.record("appels_api_é", customer="cus_ü", identifier="req_日本")
    assert written(strict) == ["1"]


def test_dimension_values_may_hold_any_string(strict: meterstream.MeterClient) -> None:
    # Stripe documents payload values as strings and nothing more (FACTS.md):
    # the JSON encoder escapes control characters, so they are left alone.
    meterstream.record("calls", customer=CUS, dimensions={"prompt": "a\nb\x00"})
    assert strict.flush(30)
    (event,) = strict.exporter.events  # type: ignore[attr-defined]
    assert event["payload"]["prompt"] == "a\nb\x00"
