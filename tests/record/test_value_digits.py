"""What record() accepts, Stripe bills: one rule for a value's digits (issue 24, item 1).

Stripe refuses values with more than 15 significant digits
(``meter_event_value_too_many_digits``), and its changelog does not say
whether an integer's trailing zeros count. meterstream._digits counts every
digit as written, leading zeros aside: the record path's checks, the wire
encoding, the aggregation split and the emulator's asynchronous validation
all use it, so nothing ``record()`` takes is refused after the 200.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meterstream
from meterstream._aggregate.arithmetic import split_value
from meterstream._digits import digits_as_written
from meterstream._record.checks import format_value
from meterstream.emulator import EmulatorState

PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
CUS = "cus_digits"


@pytest.fixture
def client() -> Iterator[meterstream.MeterClient]:
    client = meterstream.MeterClient(exporter="memory", raise_errors=True)
    yield client
    client.shutdown(0)


def reported_codes(events: list[dict[str, Any]]) -> list[str]:
    """What the emulator's asynchronous validation says of *events*, sent as they are."""
    state = EmulatorState(auto_create_meters=True)
    state.ingest({"events": events})
    return [error["code"] for error in state.validation_errors]


def recorded(client: meterstream.MeterClient, value: Any) -> list[dict[str, Any]]:
    """The wire events of ``record(value)``, or [] when it was refused at the call."""
    try:
        client.record("digits", value, customer=CUS)
    except meterstream.InvalidEventError as exc:
        assert exc.field == "value"
        return []
    assert client.flush(10)
    events: list[dict[str, Any]] = list(client.exporter.events)  # type: ignore[attr-defined]
    client.exporter.clear()  # type: ignore[attr-defined]
    return events


#: Far past what fits, on both sides of every bound: ints to 10**45 (trailing
#: zeros or not), floats of any size, Decimals of any exponent, numeric text.
values = st.one_of(
    st.integers(min_value=-(10**45), max_value=10**45),
    st.builds(lambda n, k: n * 10**k, st.integers(-(10**15), 10**15), st.integers(0, 30)),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e13, max_value=1e17),
    st.builds(
        lambda digits, exponent: Decimal(digits).scaleb(exponent),
        st.integers(min_value=-(10**18), max_value=10**18),
        st.integers(min_value=-45, max_value=25),
    ),
)
values = st.one_of(values, values.map(str))


@PROPERTY_SETTINGS
@given(value=values)
def test_every_value_record_accepts_passes_the_emulators_asynchronous_validation(
    client: meterstream.MeterClient, value: Any
) -> None:
    events = recorded(client, value)
    if events:
        assert reported_codes(events) == [], events[0]["payload"]["value"]


@pytest.mark.parametrize(
    "value",
    [10**20, 1e20, 1e25, 10**15, 1e15, "100000000000000000000", Decimal("1E+20"), -(10**16)],
)
def test_a_value_stripe_would_refuse_for_its_digits_is_invalid_at_the_call(
    client: meterstream.MeterClient, value: Any
) -> None:
    with pytest.raises(meterstream.InvalidEventError) as info:
        client.record("digits", value, customer=CUS)
    assert info.value.field == "value"
    assert info.value.value is value
    assert "15 digits" in str(info.value)


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (999_999_999_999_999, "999999999999999"),
        (999_999_999_999_999.0, "999999999999999"),
        (Decimal("0.000000000000000000000000000123"), "0.000000000000000000000000000123"),
        (Decimal("12345678901.2345"), "12345678901.2345"),
    ],
)
def test_values_of_15_digits_as_written_are_sent_and_billed(
    client: meterstream.MeterClient, value: Any, written: str
) -> None:
    events = recorded(client, value)
    assert [event["payload"]["value"] for event in events] == [written]
    assert reported_codes(events) == []


def test_the_emulator_counts_an_integers_trailing_zeros() -> None:
    event = {"event_name": "digits", "payload": {"stripe_customer_id": CUS, "value": "0"}}
    for text, codes in [
        ("100000000000000000000", ["meter_event_value_too_many_digits"]),
        ("1000000000000000", ["meter_event_value_too_many_digits"]),
        ("1e20", ["meter_event_value_too_many_digits"]),
        ("999999999999999", []),
        ("0.000000000000000000000000001", []),
    ]:
        event["payload"] = {"stripe_customer_id": CUS, "value": text}
        assert reported_codes([dict(event)]) == codes, text


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.one_of(
            st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1),
            st.decimals(min_value=-(10**14), max_value=10**14, places=6, allow_nan=False),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_every_part_of_an_aggregated_sum_passes_the_emulators_validation(uses: list[Any]) -> None:
    total: Any = 0
    for use in uses:
        total = Decimal(total) + Decimal(use) if not isinstance(use, int) else total + use
    parts = split_value(total)
    written = [format_value(part) for part in parts]
    assert all((digits_as_written(text) or 0) <= 15 for text in written), written
    events = [
        {"event_name": "digits", "payload": {"stripe_customer_id": CUS, "value": text}}
        for text in written
    ]
    assert reported_codes(events) == []
