"""The 15-digit split: parts Stripe accepts, adding up exactly, never rounded."""

from __future__ import annotations

from decimal import Context, Decimal, Inexact
from typing import Union

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from meterstream._aggregate.arithmetic import split_value
from meterstream._record import checks as _checks

# Slow machines and shared CPUs: no per-example deadline, nothing written to disk.
PROPERTY_SETTINGS = settings(
    deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
EXACT = Context(prec=1000, traps=[Inexact])

#: The largest value written with 15 digits.
LARGEST = 10**15 - 1

# Sums of values that can be recorded (15 digits as written: below 10**15,
# no digit past 10**-38), up to a thousand times the largest.
totals = st.one_of(
    st.integers(min_value=-1000 * LARGEST, max_value=1000 * LARGEST),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: d.as_tuple().exponent >= -38 and d.adjusted() <= 17  # type: ignore[operator]
    ),
    st.builds(
        lambda digits, exponent: Decimal(digits).scaleb(exponent),
        st.integers(min_value=-(10**27), max_value=10**27),
        st.integers(min_value=-20, max_value=-10),
    ),
).filter(lambda total: abs(Decimal(total)) <= 1000 * LARGEST)


def exact_sum(parts: list[Union[int, Decimal]]) -> Decimal:
    total = Decimal(0)
    for part in parts:
        total = EXACT.add(total, Decimal(part))
    return total


@PROPERTY_SETTINGS
@given(totals)
def test_parts_fit_15_digits_and_add_up_to_the_total_exactly(
    total: Union[int, Decimal],
) -> None:
    parts = split_value(total)
    assert exact_sum(parts) == Decimal(total)
    for part in parts:
        _checks.check_value(part)  # what the record path accepts, Stripe too
        assert type(part) in (int, Decimal)
        assert Decimal(_checks.format_value(part)) == Decimal(part)  # written as is
    if len(parts) > 1:
        assert all(part != 0 for part in parts)
        assert all((part > 0) == (Decimal(total) > 0) for part in parts)
    assert split_value(total) == parts  # deterministic


@PROPERTY_SETTINGS
@given(totals)
def test_as_few_parts_as_the_digits_need(total: Union[int, Decimal]) -> None:
    # From 10**15 a sum first goes out in parts of the largest 15-digit value.
    assume(abs(Decimal(total)) <= LARGEST)
    digits = Decimal(total).normalize(EXACT).as_tuple().digits
    assert len(split_value(total)) <= max(1, -(-len(digits) // 15))


big_totals = st.builds(
    lambda whole, rest, negative: EXACT.add(Decimal(whole * LARGEST), rest).copy_sign(
        Decimal(-1 if negative else 1)
    ),
    st.integers(min_value=1, max_value=1000),
    st.decimals(min_value=0, max_value=LARGEST, places=20, allow_nan=False),
    st.booleans(),
)


@PROPERTY_SETTINGS
@given(big_totals)
def test_a_sum_of_10_to_the_15_or_more_takes_one_part_per_largest_value(
    total: Union[int, Decimal],
) -> None:
    number = Decimal(total).copy_abs()  # exact: abs() would round to 28 digits
    parts = split_value(total)
    whole = int(number // LARGEST)
    assert [abs(part) for part in parts[:whole]] == [LARGEST] * whole
    assert len(parts) <= whole + 4  # the rest: below 10**15, no digit past 10**-38


def test_a_sum_past_what_one_value_can_be_written_as_is_cut_by_magnitude() -> None:
    # 10**20 as one value is 21 digits as written: Stripe refuses it (issue 24).
    assert split_value(10**16) == [LARGEST] * 10 + [10]
    assert split_value(-(2 * LARGEST + 7)) == [-LARGEST, -LARGEST, -7]


def test_a_total_that_fits_is_one_part_kept_as_is() -> None:
    assert split_value(10**15 - 1) == [10**15 - 1]
    assert split_value(Decimal("12.50")) == [Decimal("12.5")]
    assert split_value(Decimal("1E+14")) == [10**14]
    assert split_value(0) == [0]
    assert split_value(Decimal("-0.000")) == [0]


def test_examples_of_the_split() -> None:
    assert split_value(10**15 + 1) == [LARGEST, 2]
    assert split_value(Decimal("123456789012345.678")) == [123456789012345, Decimal("0.678")]
    assert split_value(Decimal("12345678901234.56789")) == [
        Decimal("12345678901234.5"),
        Decimal("0.06789"),
    ]
    assert split_value(-(10**16) - 3) == [-LARGEST] * 10 + [-13]
