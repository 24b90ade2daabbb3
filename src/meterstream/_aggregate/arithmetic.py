"""The arithmetic of aggregation: exact sums, the 15-digit split, windows, identifiers.

Pure functions, shared by the in-memory :class:`meterstream._aggregate.aggregator.Aggregator`
and by anything that aggregates uses already stored (a spool's aggregation step):
the same uses and aggregate id always give the same events.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, Rounded
from typing import Any, Optional, Union

from meterstream._digits import MAX_DIGITS, too_many_digits
from meterstream._record.events import RawEvent

__all__ = [
    "DimsKey",
    "Key",
    "Number",
    "EXACT",
    "FLOAT_HIGH",
    "FLOAT_LOW",
    "MAX_EXP",
    "ZERO",
    "add_exact",
    "add_into",
    "aggregate",
    "aggregate_identifier",
    "dimensions_key",
    "emit",
    "exact_decimal",
    "exact_number",
    "float_sums",
    "new_aggregate_id",
    "split_value",
    "window_start",
]

#: A hashable, order-independent form of a use's dimensions (sorted pairs).
DimsKey = Optional[tuple[tuple[str, str], ...]]
Key = tuple[str, str, DimsKey]
Number = Union[int, Decimal]

#: Decimal sums are done here: far more digits than any sum of 15-digit
#: values within the exponent bounds below can need, and any rounding is an
#: error instead of a silent change of the bill.
EXACT = Context(prec=400, Emax=999, Emin=-999, traps=[Inexact, Rounded, InvalidOperation, Overflow])
#: Values whose digits reach past 10**±MAX_EXP are not aggregated (the caller
#: records them unaggregated): they keep every exact sum well within EXACT.
MAX_EXP = 60
ZERO = Decimal(0)
#: The largest value written with 15 digits (meterstream._digits' rule).
_LARGEST_PART = Decimal(10**MAX_DIGITS - 1)
#: At most this many whole parts a sum: 10**19, ten thousand uses near the largest.
_MAX_WHOLE_PARTS = 10_000
FLOAT_LOW = 1e-45
FLOAT_HIGH = 1e45


def dimensions_key(dimensions: Union[Mapping[str, str], DimsKey]) -> DimsKey:
    """The one encoding of a use's dimensions: their pairs sorted by name, None for none.

    Equal dimensions give equal keys, whatever their order. The in-memory
    aggregator adds up uses under it, a spool keeps it as text
    (:func:`meterstream._spool.rows.encode_dimensions`), the relays group
    uses by it. A key given again comes back as it is; callers with
    constant dimensions (``@meter(..., dimensions=...)``) compute it once.
    """
    if not dimensions:
        return None
    if type(dimensions) is tuple:
        return dimensions
    assert isinstance(dimensions, Mapping)
    return tuple(sorted(dimensions.items()))


def exact_number(text: str) -> Optional[Number]:
    """A wire value's text as an exact number, an int when it is integral; None
    when it is not one to aggregate (not a finite number, or digits past
    10**±MAX_EXP, as :func:`exact_decimal` says)."""
    try:
        number = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        return None
    if too_many_digits(text.strip()):
        return None  # Stripe refuses it: sent as it came, aggregated with nothing
    if exact_decimal(number) is None:
        return None
    if number:
        exponent = number.as_tuple().exponent
        assert isinstance(exponent, int)  # finite
        if exponent >= 0:
            return int(number)
    return number


def new_aggregate_id() -> str:
    """A random identifier prefix for one process's aggregated events."""
    return "msa_" + base64.b32encode(os.urandom(10)).decode("ascii").lower() + "_"


def exact_decimal(value: Any) -> Optional[Decimal]:
    """*value* (a checked float or Decimal) as the Decimal the wire would carry,
    or None when it must not be aggregated."""
    kind = type(value)
    if kind is float:
        # Within these bounds (NaN and infinities are not) the 15 digits
        # written stay between 10**-59 and 10**45: no need to look at them.
        if FLOAT_LOW <= abs(value) < FLOAT_HIGH:
            return Decimal(format(value, ".15g"))
        return ZERO if value == 0 else None
    if kind is not Decimal:
        return None  # bools, strings, other types: the caller's validation decides
    number: Decimal = value
    if not number.is_finite():
        return None
    if number:
        exponent = number.as_tuple().exponent
        assert isinstance(exponent, int)  # finite
        if exponent < -MAX_EXP or number.adjusted() > MAX_EXP:
            return None
    return number


# -- the 15-digit split and identifiers -------------------------------------------


def split_value(total: Number) -> list[Number]:
    """*total* as values of at most 15 significant digits whose exact sum is *total*.

    Each part passes Stripe's digit rule as :mod:`meterstream._digits` reads
    it (at most 15 digits as written, leading zeros aside). One value when
    it fits; otherwise as many parts of the largest such value
    (999,999,999,999,999) as a sum of 10**15 or more needs, then the rest's
    digits cut in groups of 15 from the most significant, each group a value
    of its own (groups of zeros are left out). Integral parts are ints.
    Deterministic, never rounds.
    """
    if type(total) is int and -(10**MAX_DIGITS) < total < 10**MAX_DIGITS:
        return [total]
    number = Decimal(total)  # exact, whatever the context
    if not number:
        return [0]
    parts: list[Number] = []
    # A sum of 10**15 or more goes out as whole parts of the largest 15-digit
    # value first: each use is below 10**15, so that is at most one part a
    # use, and the rest is below 10**15, so its first group of 15 digits is
    # written with 15 digits at most.
    if abs(number) > _LARGEST_PART:
        whole, rest = EXACT.divmod(number, _LARGEST_PART)  # same sign, exact
        if abs(whole) <= _MAX_WHOLE_PARTS:
            parts.extend([int(_LARGEST_PART.copy_sign(whole))] * int(abs(whole)))
            number = rest
        # Else a sum no run of record() calls makes (a spool's rows written
        # by a version that took 40-digit values): cut by digits only, as
        # that version did, rather than into millions of events.
    if not number:
        return parts
    sign, digits, exponent = EXACT.normalize(number).as_tuple()
    assert isinstance(exponent, int)
    count = len(digits)
    for begin in range(0, count, MAX_DIGITS):
        group = digits[begin : begin + MAX_DIGITS]
        if not any(group):
            continue
        part = Decimal((sign, group, exponent + count - begin - len(group)))
        parts.append(_as_number(part))
    return parts


def _as_number(value: Decimal) -> Number:
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent >= 0:
        return int(value)
    reduced = EXACT.normalize(value)
    exponent = reduced.as_tuple().exponent
    assert isinstance(exponent, int)
    return int(reduced) if exponent >= 0 else reduced


def aggregate_identifier(
    aggregate_id: str, key: Key, window_start: float, part: int, split: int
) -> str:
    """The identifier of an aggregated event: a function of what it aggregates and nothing else.

    *aggregate_id* names the aggregation (a per-process random prefix, or one a spool
    stores with the aggregation); *part* tells apart events of one key and window
    closed at different times (``flush()`` mid-window); *split* is the
    index in the 15-digit split. At most 100 characters for any *aggregate_id*
    of at most 40.
    """
    name, customer, dims = key
    material = json.dumps(
        [aggregate_id, name, customer, dims, repr(float(window_start)), part, split],
        ensure_ascii=True,
        separators=(",", ":"),
    ).encode("ascii")
    digest = hashlib.blake2b(material, digest_size=12).hexdigest()
    return f"{aggregate_id}{int(window_start)}_{part}_{split}_{digest}"


def emit(sums: dict[tuple[float, Key], Number], aggregate_id: str, part: int) -> list[RawEvent]:
    """One event per (window, key), or several when its sum needs the split."""
    out: list[RawEvent] = []
    for window_start, key in sorted(sums, key=_order):
        total = sums[(window_start, key)]
        name, customer, dims = key
        dimensions = dict(dims) if dims else None
        for split, value in enumerate(split_value(total)):
            ident = aggregate_identifier(aggregate_id, key, window_start, part, split)
            out.append((name, customer, value, window_start, ident, dimensions))
    return out


def _order(item: tuple[float, Key]) -> tuple[float, str, str, DimsKey]:
    start, (name, customer, dims) = item
    return (start, name, customer, dims or ())


def add_exact(total: Optional[Number], value: Number) -> Number:
    """*total* + *value*, exactly: ints add as ints, anything else as Decimals
    in :data:`EXACT`; *value* itself when *total* is None (nothing yet)."""
    if total is None:
        return value
    if type(total) is int and type(value) is int:
        return total + value
    return EXACT.add(Decimal(total), Decimal(value))


def add_into(
    sums: dict[tuple[float, Key], Number], start: float, part: Mapping[Key, Number]
) -> None:
    """Add each key's number in *part* into *sums*, under the window *start*."""
    for key, value in part.items():
        slot = (start, key)
        sums[slot] = add_exact(sums.get(slot), value)


def float_sums(floats: Mapping[Key, list[float]]) -> dict[Key, Number]:
    """The exact sum of each key's floats, each as the wire would carry it."""
    out: dict[Key, Number] = {}
    add = EXACT.add
    for key, values in floats.items():
        total = ZERO
        for value in values:
            total = add(total, Decimal(format(value, ".15g")))
        out[key] = total
    return out


def window_start(now: float, window: int) -> float:
    """The start of the *window*-second window (aligned to the wall clock) holding *now*."""
    start = float(math.floor(now / window) * window)
    # The division is rounded: never let that put *now* outside its window.
    if start > now:
        start -= window
    elif start + window <= now:
        start += window
    return start


def aggregate(
    uses: Iterable[tuple[str, str, Any, float, DimsKey]],
    *,
    window: int,
    aggregate_id: str,
    part: int = 0,
) -> list[RawEvent]:
    """Aggregate recorded uses ``(event_name, customer, value, timestamp, dims_key)``.

    The pure form of what a :class:`Aggregator` does, for uses already stored
    (a spool's pending rows): the same uses and *aggregate_id* always give the
    same events and identifiers, so an aggregation repeated after a crash is
    deduplicated by Stripe. Values must be ints, floats or Decimals that
    passed :func:`meterstream._record.events.check_value`.
    """
    sums: dict[tuple[float, Key], Number] = {}
    for name, customer, value, timestamp, dims in uses:
        number: Number
        if type(value) is int:
            number = value
        else:
            exact = exact_decimal(value)
            if exact is None:
                raise ValueError(f"value {value!r} cannot be aggregated exactly")
            number = exact
        add_into(sums, window_start(timestamp, window), {(name, customer, dims): number})
    return emit(sums, aggregate_id, part)
