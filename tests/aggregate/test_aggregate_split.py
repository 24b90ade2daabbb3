"""The 15-significant-digit split: parts Stripe accepts, adding up exactly, never rounded."""

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

# Sums of values that can be written (at most 40 characters: below 10**40,
# no digit past 10**-38), up to a thousand times the largest.
totals = st.one_of(
    st.integers(min_value=-(10**42), max_value=10**42),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: d.as_tuple().exponent >= -38 and d.adjusted() <= 42  # type: ignore[operator]
    ),
    st.builds(
        lambda digits, exponent: Decimal(digits).scaleb(exponent),
        st.integers(min_value=-(10**27), max_value=10**27),
        st.integers(min_value=-20, max_value=15),
    ),
)


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
    # Past 10**39 a sum first goes out in parts of the largest writable value.
    assume(abs(Decimal(total)) < Decimal("1E+39"))
    digits = Decimal(total).normalize(EXACT).as_tuple().digits
    assert len(split_value(total)) <= max(1, -(-len(digits) // 15))


def test_a_sum_past_what_one_value_can_be_written_as_is_cut_by_magnitude() -> None:
    largest = 999_999_999_999_999 * 10**24
    assert split_value(10**40) == [largest, largest, largest, largest, largest, largest,
                                   largest, largest, largest, largest, 10**25]  # fmt: skip
    assert split_value(-(2 * largest + 7)) == [-largest, -largest, -7]


def test_a_total_that_fits_is_one_part_kept_as_is() -> None:
    assert split_value(10**15 - 1) == [10**15 - 1]
    assert split_value(Decimal("12.50")) == [Decimal("12.5")]
    assert split_value(Decimal("1E+20")) == [10**20]
    assert split_value(0) == [0]
    assert split_value(Decimal("-0.000")) == [0]


def test_examples_of_the_split() -> None:
    assert split_value(10**15 + 1) == [10**15, 1]
    assert split_value(1_234_567_890_123_456_789) == [1_234_567_890_123_450_000, 6789]
    assert split_value(Decimal("12345678901234.56789")) == [
        Decimal("12345678901234.5"),
        Decimal("0.06789"),
    ]
    assert split_value(-(10**16) - 3) == [-(10**16), -3]
