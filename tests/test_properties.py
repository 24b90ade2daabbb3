"""Properties: every valid input becomes an event Stripe accepts; every invalid one is refused.

Stripe's rules for the stream's request body (the JSON Schema of
``POST /v2/billing/meter_event_stream`` and the prose limits of its docs) are
re-expressed here in :func:`assert_stripe_accepts`, so the test does not read
the schema file:

* a request holds 1..100 events;
* an event is an object with ``event_name`` and ``payload`` required, and
  optionally ``identifier`` and ``timestamp``, nothing else;
* ``event_name`` and ``identifier`` are strings of 1..100 characters;
* ``payload`` maps strings to strings, and holds the meter's customer key and
  value key;
* ``timestamp`` is an RFC 3339 date-time (we send UTC, milliseconds, ``Z``),
  within the past 35 days and at most 5 minutes ahead;
* the value is a plain decimal number with at most 15 digits as written,
  leading zeros aside (Stripe's changelog says "15 significant digits"
  without saying whether an integer's trailing zeros count: they are
  counted, the safe reading, so ``100000000000000000000`` is refused).
"""

from __future__ import annotations

import json
import math
import re
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meterstream
from meterstream._exporters.base import Exporter

PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

CUSTOMER_KEY = "stripe_customer_id"
VALUE_KEY = "value"
RFC3339_MS_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
PAST_WINDOW = 35 * 24 * 3600
FUTURE_WINDOW = 5 * 60
MARGIN = 120  # seconds kept off each edge of the window: generation and recording differ in time


# -- Stripe's rules -----------------------------------------------------------------------


def digits_as_written(text: str) -> int:
    """Digits of a plain decimal string, leading zeros aside (re-expressed, not imported)."""
    return len(text.lstrip("-").replace(".", "").lstrip("0"))


def parse_timestamp(text: str) -> float:
    assert RFC3339_MS_Z.fullmatch(text), text
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def assert_stripe_accepts(event: Any, now: float) -> None:
    assert isinstance(event, dict)
    assert {"event_name", "payload"} <= set(event)
    assert set(event) <= {"event_name", "payload", "identifier", "timestamp"}
    name = event["event_name"]
    assert isinstance(name, str) and 1 <= len(name) <= 100
    if "identifier" in event:
        ident = event["identifier"]
        assert isinstance(ident, str) and 1 <= len(ident) <= 100
    payload = event["payload"]
    assert isinstance(payload, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in payload.items())
    assert CUSTOMER_KEY in payload and VALUE_KEY in payload
    if "timestamp" in event:
        seconds = parse_timestamp(event["timestamp"])
        assert now - PAST_WINDOW <= seconds <= now + FUTURE_WINDOW
    text = payload[VALUE_KEY]
    assert "e" not in text.lower(), f"exponent in {text!r}"
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the assertion below explains
        raise AssertionError(f"value {text!r} is not a decimal number") from None
    assert value.is_finite()
    assert digits_as_written(text) <= 15, text


def assert_batch_accepted(batch: list[Any], now: float) -> None:
    assert 1 <= len(batch) <= 100
    for event in batch:
        assert_stripe_accepts(event, now)


# -- strategies -----------------------------------------------------------------------------

#: What Stripe can take as an event name or identifier: printable, not blank.
names = st.text(min_size=1, max_size=100).filter(lambda s: s.isprintable() and not s.isspace())
customers = st.from_regex(r"cus_[A-Za-z0-9]{1,24}", fullmatch=True)
ints = st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1)
ints_with_trailing_zeros = st.builds(
    lambda n, k: n * 10**k,
    st.integers(min_value=1, max_value=10**15 - 1),
    st.integers(min_value=0, max_value=14),
).filter(lambda n: n < 10**15)
#: Finite floats written (15 significant digits) with at most 15 digits and
#: 40 characters: below 999,999,999,999,999 (every float up to there fits)
#: and no smaller than 1e-22 unless zero.
finite_floats = st.floats(
    min_value=-999999999999999.0, max_value=999999999999999.0, exclude_min=True, exclude_max=True
).map(lambda x: 0.0 if abs(x) < 1e-22 else x)


def _decimal(sign: int, digits: int, exponent: int) -> Decimal:
    return Decimal((sign, tuple(int(c) for c in str(digits)), exponent))


decimals = st.builds(
    _decimal,
    st.integers(min_value=0, max_value=1),
    st.integers(min_value=0, max_value=10**15 - 1),
    st.integers(min_value=-20, max_value=20),
).filter(lambda d: digits_as_written(format(d.normalize(), "f")) <= 15)
numeric_values = st.one_of(ints, ints_with_trailing_zeros, finite_floats, decimals)
dimension_keys = st.text(min_size=1, max_size=100).filter(
    lambda k: k not in (CUSTOMER_KEY, VALUE_KEY)
)
dimensions = st.dictionaries(dimension_keys, st.text(max_size=50), max_size=5)
zones = st.sampled_from(
    [timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)


class Moment:
    """A timestamp as an offset from the time of recording (strategies must not read the clock).

    ``make()`` returns Unix seconds, or an aware datetime in ``zone``.
    """

    def __init__(self, offset: float, zone: Optional[timezone]) -> None:
        self.offset = offset
        self.zone = zone

    def make(self) -> Any:
        seconds = time.time() + self.offset
        if self.zone is None:
            return seconds
        return datetime.fromtimestamp(seconds, self.zone)

    def __repr__(self) -> str:
        return f"Moment(offset={self.offset!r}, zone={self.zone!r})"


#: Inside the window, with a margin at each edge.
moments = st.builds(
    Moment,
    st.floats(min_value=-PAST_WINDOW + MARGIN, max_value=FUTURE_WINDOW - MARGIN),
    st.one_of(st.none(), zones),
)


def as_seconds(ts: Any) -> float:
    return ts.timestamp() if isinstance(ts, datetime) else float(ts)


def expected_value(value: Any) -> Decimal:
    """The number Stripe should read: floats as written with 15 significant digits."""
    if isinstance(value, float):
        return Decimal(format(value, ".15g"))
    return Decimal(value)


class BatchRecorder(Exporter):
    """Keeps each batch it is sent, to check the request-level rules."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    def export(self, events: list[dict[str, Any]], batch_id: str = "") -> None:
        self.batches.append(list(events))


def strict_client(**settings: Any) -> meterstream.MeterClient:
    """A memory client that raises what it refuses (a fixture cannot serve @given)."""
    return meterstream.MeterClient(exporter="memory", raise_errors=True, **settings)


def flushed(client: meterstream.MeterClient) -> list[dict[str, Any]]:
    assert client.flush(5.0)
    events: list[dict[str, Any]] = list(client.exporter.events)  # type: ignore[attr-defined]
    client.exporter.clear()  # type: ignore[attr-defined]
    return events


# -- valid inputs -------------------------------------------------------------------------------


def test_every_valid_record_becomes_an_event_stripe_accepts() -> None:
    client = strict_client()

    @PROPERTY_SETTINGS
    @given(
        name=names,
        customer=customers,
        value=numeric_values,
        identifier=st.one_of(st.none(), names),
        dims=dimensions,
        moment=st.one_of(st.none(), moments),
    )
    def check(
        name: str,
        customer: str,
        value: Any,
        identifier: Optional[str],
        dims: dict[str, str],
        moment: Optional[Moment],
    ) -> None:
        before = time.time()
        ts = None if moment is None else moment.make()
        client.record(
            name, value, customer=customer, identifier=identifier, dimensions=dims, timestamp=ts
        )
        (event,) = flushed(client)
        assert_stripe_accepts(event, time.time())
        assert event["event_name"] == name
        if identifier is not None:
            assert event["identifier"] == identifier
        payload = dict(event["payload"])
        assert payload.pop(CUSTOMER_KEY) == customer
        assert Decimal(payload.pop(VALUE_KEY)) == expected_value(value)
        assert payload == dims
        sent_at = parse_timestamp(event["timestamp"])
        if ts is None:
            assert before - 0.001 <= sent_at <= time.time() + 0.001
        else:
            assert abs(sent_at - as_seconds(ts)) <= 0.0005 + 1e-6

    try:
        check()
    finally:
        client.shutdown(0)


def test_ints_within_15_digits_are_sent_exactly() -> None:
    client = strict_client()

    @PROPERTY_SETTINGS
    @given(value=st.one_of(ints, ints_with_trailing_zeros))
    def check(value: int) -> None:
        client.record("calls", value, customer="cus_1")
        (event,) = flushed(client)
        assert_stripe_accepts(event, time.time())
        assert event["payload"][VALUE_KEY] == str(value)

    try:
        check()
    finally:
        client.shutdown(0)


def test_finite_floats_are_sent_within_float_formatting() -> None:
    client = strict_client()

    @PROPERTY_SETTINGS
    @given(value=finite_floats)
    def check(value: float) -> None:
        client.record("calls", value, customer="cus_1")
        (event,) = flushed(client)
        assert_stripe_accepts(event, time.time())
        sent = Decimal(event["payload"][VALUE_KEY])
        assert sent == Decimal(format(value, ".15g"))
        assert abs(sent - Decimal(value)) <= abs(Decimal(value)) * Decimal("5e-15")

    try:
        check()
    finally:
        client.shutdown(0)


def test_decimals_within_15_digits_are_sent_exactly() -> None:
    client = strict_client()

    @PROPERTY_SETTINGS
    @given(value=decimals, as_string=st.booleans())
    def check(value: Decimal, as_string: bool) -> None:
        client.record("calls", str(value) if as_string else value, customer="cus_1")
        (event,) = flushed(client)
        assert_stripe_accepts(event, time.time())
        assert Decimal(event["payload"][VALUE_KEY]) == value

    try:
        check()
    finally:
        client.shutdown(0)


def test_batches_hold_1_to_100_events_whatever_the_batch_size() -> None:
    exporter = BatchRecorder()
    clients: dict[int, meterstream.MeterClient] = {}

    @PROPERTY_SETTINGS
    @given(batch_size=st.integers(min_value=1, max_value=100), n=st.integers(1, 260))
    def check(batch_size: int, n: int) -> None:
        client = clients.get(batch_size)
        if client is None:
            client = clients[batch_size] = meterstream.MeterClient(
                exporter=exporter, batch_size=batch_size, flush_interval=3600
            )
        exporter.batches.clear()
        for i in range(n):
            client.record("calls", i, customer="cus_1")
        assert client.flush(5.0)
        now = time.time()
        for batch in exporter.batches:
            assert len(batch) <= batch_size
            assert_batch_accepted(batch, now)
        sent = [e["payload"][VALUE_KEY] for batch in exporter.batches for e in batch]
        assert sent == [str(i) for i in range(n)]

    try:
        check()
    finally:
        for client in clients.values():
            client.shutdown(0)


class JsonRecorder(Exporter):
    """Keeps each batch as the Stripe exporter would send it, and as dicts."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, list[dict[str, Any]]]] = []

    def export(self, events: Any, batch_id: str = "") -> None:
        self.sent.append((events.to_json(), list(events)))


def test_the_request_body_is_the_batch_events_as_json() -> None:
    # to_json() writes the body from the recorded tuples, by hand, for speed;
    # iterating a batch builds the events with to_wire(). They must agree,
    # event for event, on anything that can be recorded: mixed names (with
    # per-event payload keys), customers, values, identifiers, dimensions
    # and timestamps in one batch.
    exporter = JsonRecorder()
    client = meterstream.MeterClient(
        exporter=exporter,
        raise_errors=True,
        flush_interval=3600,
        payload_keys={"special_meter": {"customer": "account", "value": "amount"}},
    )
    event = st.fixed_dictionaries(
        {
            "name": st.one_of(names, st.just("special_meter")),
            "customer": customers,
            "value": numeric_values,
            "identifier": st.one_of(st.none(), names),
            "dims": dimensions.filter(lambda d: not {"account", "amount"} & set(d)),
            "moment": st.one_of(st.none(), moments),
        }
    )

    @PROPERTY_SETTINGS
    @given(events=st.lists(event, min_size=1, max_size=120))
    def check(events: list[dict[str, Any]]) -> None:
        exporter.sent.clear()
        for e in events:
            ts = None if e["moment"] is None else e["moment"].make()
            client.record(
                e["name"],
                e["value"],
                customer=e["customer"],
                identifier=e["identifier"],
                dimensions=e["dims"],
                timestamp=ts,
            )
        assert client.flush(5.0)
        assert sum(len(wire) for _, wire in exporter.sent) == len(events)
        for body, wire in exporter.sent:
            assert json.loads(body) == {"events": wire}

    try:
        check()
    finally:
        client.shutdown(0)


# -- invalid inputs ----------------------------------------------------------------------------

too_many_digit_ints = st.one_of(
    st.builds(
        lambda head, last, sign: sign * (head * 10 + last),
        st.integers(min_value=10**14, max_value=10**30),
        st.integers(min_value=1, max_value=9),
        st.sampled_from([1, -1]),
    ),
    # Trailing zeros count: 10**20 is 21 digits as written (issue 24).
    st.builds(lambda n, k: n * 10**k, st.integers(1, 10**15 - 1), st.integers(15, 39)).filter(
        lambda n: n >= 10**15
    ),
)
too_many_digit_floats = st.floats(min_value=1e15, max_value=1e39) | st.floats(
    min_value=-1e39, max_value=-1e15
)
too_many_digit_decimals = st.builds(
    lambda digits, exponent: Decimal((0, tuple(int(c) for c in str(digits)), exponent)),
    st.integers(min_value=10**15, max_value=10**25).filter(lambda n: n % 10 != 0),
    st.integers(min_value=-20, max_value=20),
)


def _not_a_number(text: str) -> bool:
    try:
        Decimal(text.strip())
    except InvalidOperation:
        return True
    return False


too_long_values = st.one_of(
    st.floats(min_value=1e40, allow_infinity=False),
    st.floats(max_value=-1e40, allow_infinity=False),
    st.floats(min_value=1e-320, max_value=1e-39),
    st.builds(lambda e: Decimal(f"1E{e}"), st.integers(min_value=40, max_value=10**9)),
    st.builds(lambda e: Decimal(f"-7E-{e}"), st.integers(min_value=39, max_value=10**9)),
    st.builds(lambda n, k: n * 10**k, st.integers(1, 10**15 - 1), st.integers(40, 200)),
)
invalid_values = st.one_of(
    too_long_values,
    too_long_values.map(str),
    st.booleans(),
    st.sampled_from([math.nan, math.inf, -math.inf, Decimal("NaN"), Decimal("-Infinity")]),
    too_many_digit_ints,
    too_many_digit_floats,
    too_many_digit_decimals,
    too_many_digit_decimals.map(str),
    st.text(max_size=20).filter(_not_a_number),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
unprintable_text = st.builds(
    lambda head, bad, tail: head + bad + tail,
    st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=20),
    st.sampled_from(["\n", "\x00", "\x1b", "\x7f", "\x85", "\u200b", "\u2028", "\ud800"]),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=20),
)
blank_text = st.text(st.sampled_from(" \t\n\r\x0b\x0c\u3000"), min_size=1, max_size=10)
invalid_identifiers = st.one_of(
    st.just(""),
    unprintable_text,
    blank_text,
    st.text(min_size=101, max_size=200),
    st.integers(),
    st.floats(),
    st.binary(min_size=1, max_size=10),
)
invalid_dimensions = st.one_of(
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(dimension_keys, st.one_of(st.integers(), st.none()), min_size=1, max_size=3),
    st.dictionaries(st.integers(), st.text(max_size=5), min_size=1, max_size=3),
    st.dictionaries(st.text(min_size=101, max_size=120), st.text(), min_size=1, max_size=1),
    st.sampled_from([{CUSTOMER_KEY: "cus_2"}, {VALUE_KEY: "3"}]),
)


class BadMoment(Moment):
    """Outside the window (or naive): ``make()`` gives what record() must refuse."""

    def __init__(self, offset: float, naive: bool) -> None:
        super().__init__(offset, None)
        self.naive = naive

    def make(self) -> Any:
        seconds = time.time() + self.offset
        return datetime.fromtimestamp(seconds) if self.naive else seconds


bad_moments = st.one_of(
    st.builds(BadMoment, st.floats(-1e9, -PAST_WINDOW - MARGIN), st.booleans()),
    st.builds(BadMoment, st.floats(FUTURE_WINDOW + MARGIN, 1e9), st.booleans()),
    st.builds(BadMoment, st.floats(-3600, 0), st.just(True)),
)
other_bad_timestamps = st.one_of(st.text(max_size=10), st.booleans(), st.just(math.nan))


@st.composite
def invalid_records(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """One field invalid, every other one valid."""
    kwargs: dict[str, Any] = {
        "event_name": draw(names),
        "value": draw(numeric_values),
        "customer": draw(customers),
    }
    field = draw(st.sampled_from(["value", "identifier", "dimensions", "timestamp", "customer"]))
    if field == "value":
        kwargs["value"] = draw(invalid_values)
    elif field == "identifier":
        kwargs["identifier"] = draw(invalid_identifiers)
    elif field == "dimensions":
        kwargs["dimensions"] = draw(invalid_dimensions)
    elif field == "timestamp":
        kwargs["timestamp"] = draw(st.one_of(bad_moments, other_bad_timestamps))
    else:
        kwargs["customer"] = draw(
            st.one_of(
                st.integers(min_value=1),
                st.lists(customers, min_size=1),
                unprintable_text,
                blank_text,
            )
        )
    return field, kwargs


def test_every_invalid_record_raises_invalid_event_error() -> None:
    client = strict_client()

    @PROPERTY_SETTINGS
    @given(case=invalid_records())
    def check(case: tuple[str, dict[str, Any]]) -> None:
        field, kwargs = case
        name = kwargs.pop("event_name")
        value = kwargs.pop("value")
        if isinstance(kwargs.get("timestamp"), Moment):
            kwargs["timestamp"] = kwargs["timestamp"].make()
        with pytest.raises(meterstream.InvalidEventError) as info:
            client.record(name, value, **kwargs)
        assert info.value.field.startswith(field)
        assert flushed(client) == []

    try:
        check()
    finally:
        client.shutdown(0)


def test_every_invalid_constant_value_raises_at_decoration_time() -> None:
    @PROPERTY_SETTINGS
    @given(value=invalid_values.filter(lambda v: not callable(v)))
    def check(value: Any) -> None:
        with pytest.raises(meterstream.InvalidEventError) as info:
            meterstream.meter("calls", value=value)
        assert info.value.field == "value"

    check()


def test_every_invalid_event_name_given_to_record_raises() -> None:
    client = strict_client()

    @settings(max_examples=20, deadline=None, database=None)
    @given(
        name=st.one_of(
            st.just(""),
            st.text(min_size=101, max_size=150),
            st.integers(),
            unprintable_text,
            blank_text,
        )
    )
    def check(name: Any) -> None:
        with pytest.raises(meterstream.InvalidEventError) as info:
            client.record(name, customer="cus_1")
        assert info.value.field == "event_name"

    try:
        check()
    finally:
        client.shutdown(0)


def test_every_invalid_event_name_given_to_meter_raises() -> None:
    @PROPERTY_SETTINGS
    @given(
        name=st.one_of(
            st.just(""),
            st.text(min_size=101, max_size=150),
            st.integers(),
            unprintable_text,
            blank_text,
        )
    )
    def check(name: Any) -> None:
        with pytest.raises(meterstream.InvalidEventError) as info:
            meterstream.meter(name)
        assert info.value.field == "event_name"

    check()
