"""Checks the way Stripe checks a meter event, before anything is queued.

Each ``check_*`` returns the value to keep or raises ``InvalidEventError``
naming the field and the value; the record path calls them, the flusher
never does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Optional, Union

from meterstream._digits import MAX_DIGITS, too_many_digits
from meterstream.errors import InvalidEventError, safe_type_name

__all__ = [
    "FUTURE_WINDOW",
    "MAX_FAST_INT",
    "MAX_VALUE_CHARS",
    "NOT_A_CUSTOMER",
    "PAST_WINDOW",
    "InvalidCustomer",
    "check_customer",
    "check_dimensions",
    "check_event_name",
    "check_identifier",
    "check_on_error",
    "check_timestamp",
    "check_value",
    "customer_problem",
    "known_customers",
    "known_names",
    "format_value",
    "text_problem",
]

#: Integers in this range are written with at most 15 digits (MAX_DIGITS,
#: Stripe's rule as meterstream._digits reads it): the record path's fast check.
MAX_FAST_INT = 10**MAX_DIGITS - 1
MAX_NAME = 100
#: The longest plain decimal string a value is written as, sign not counted.
#: Stripe reads values as plain decimal strings (no exponent) and keeps them
#: as doubles; 40 characters hold every 15-significant-digit value from
#: 1e-24 to just under 1e40, far past any usage, while 1E+100000 would go
#: out as 100,001 digits.
MAX_VALUE_CHARS = 40
#: The largest int that fits in MAX_VALUE_CHARS digits.
MAX_WRITTEN_INT = 10**MAX_VALUE_CHARS - 1
#: Every float in [FLOAT_FITS_LOW, FLOAT_FITS_HIGH) is written (15 significant
#: digits, format_value) with at most MAX_VALUE_CHARS characters and at most
#: MAX_DIGITS digits: the fast check. Not 1e15: 999999999999999.6 is written
#: 1000000000000000.
FLOAT_FITS_LOW = 1e-22
FLOAT_FITS_HIGH = float(MAX_FAST_INT)
PAST_WINDOW = 35 * 24 * 3600.0
FUTURE_WINDOW = 5 * 60.0


# -- validation ---------------------------------------------------------------


def _exact_str(text: str) -> str:
    """A str subclass as a plain str: its overridden methods are not ours to call."""
    return str.__str__(text)


#: Event names already checked: few per application, asked for on every
#: record() call. Bounded, so that generated names cannot grow it for ever.
known_names: set[str] = set()
_MAX_KNOWN_NAMES = 1024


def check_event_name(name: Any) -> str:
    if type(name) is str and name in known_names:
        return name
    if type(name) is not str:
        if not isinstance(name, str):
            raise InvalidEventError("event_name", name, "must be a string")
        name = _exact_str(name)
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidEventError("event_name", name, f"must be 1..{MAX_NAME} characters")
    if not name.isprintable() or name.isspace():
        raise InvalidEventError("event_name", name, text_problem(name))
    if len(known_names) < _MAX_KNOWN_NAMES:
        known_names.add(name)  # atomic under the GIL; a lost race costs a re-check
    return name  # type: ignore[no-any-return]


def check_identifier(identifier: Any) -> str:
    if type(identifier) is not str:
        if not isinstance(identifier, str):
            raise InvalidEventError("identifier", identifier, "must be a string")
        identifier = _exact_str(identifier)
    if not 1 <= len(identifier) <= MAX_NAME:
        raise InvalidEventError("identifier", identifier, f"must be 1..{MAX_NAME} characters")
    if not identifier.isprintable() or identifier.isspace():
        raise InvalidEventError("identifier", identifier, text_problem(identifier))
    return identifier  # type: ignore[no-any-return]


def text_problem(text: str) -> str:
    """Why a non-empty *text* that is blank or not printable cannot be sent."""
    if text.isspace():
        return "must not be blank"
    for position, char in enumerate(text):
        if not char.isprintable():
            return (
                f"must not contain control or other unprintable characters "
                f"(U+{ord(char):04X} at position {position})"
            )
    return "must be printable text"  # pragma: no cover - callers check first


#: Short customer ids (exact strs) that passed check_customer, bounded as
#: known_names: the record path tests membership instead of checking again.
known_customers: set[str] = set()
_MAX_KNOWN_CUSTOMERS = 10_000
_MAX_KNOWN_CUSTOMER_CHARS = 100


def check_customer(customer: Any) -> str:
    if type(customer) is str and customer in known_customers:
        return customer
    if type(customer) is not str:
        if type(customer) is InvalidCustomer:
            raise InvalidEventError("customer", customer.value, customer.reason)
        if not isinstance(customer, str):
            raise InvalidEventError("customer", customer, NOT_A_CUSTOMER)
        customer = _exact_str(customer)
    reason = customer_problem(customer)
    if reason:
        raise InvalidEventError("customer", customer, reason)
    if len(customer) <= _MAX_KNOWN_CUSTOMER_CHARS and len(known_customers) < _MAX_KNOWN_CUSTOMERS:
        known_customers.add(customer)  # atomic under the GIL; a lost race costs a re-check
    return customer  # type: ignore[no-any-return]


def customer_problem(customer: str) -> Optional[str]:
    """Why *customer* (a string) is not a usable customer id, or None."""
    if not customer:
        return "must not be empty"
    if len(customer) > 5000:
        return "must be at most 5000 characters"
    if not customer.isprintable():
        return text_problem(customer)
    stripped = customer.strip()  # the same object when there is nothing to strip
    if stripped is not customer and stripped != customer:
        if not stripped:
            return "must not be blank"
        return "must not have surrounding whitespace"
    return None


NOT_A_CUSTOMER = "must be a Stripe customer id string"


class InvalidCustomer:
    """What ``customer()`` keeps for an id that cannot be billed: records
    inside the block are refused (naming it) instead of being sent."""

    __slots__ = ("reason", "value")

    def __init__(self, value: str, reason: str) -> None:
        self.value = value
        self.reason = reason

    def __repr__(self) -> str:
        return f"InvalidCustomer({self.value!r})"


def check_value(value: Any) -> Union[int, float, Decimal]:
    """Return *value* as it will be kept (int, float or Decimal), or raise.

    Accepts ints, floats, Decimals and numeric strings; refuses bools,
    non-finite numbers, and values whose plain decimal form (what goes on
    the wire, :func:`format_value`: Stripe reads no exponents) has more than
    15 digits as written (leading zeros aside: ``10**15`` and ``1e20`` are
    refused, ``0.000125`` is not; :mod:`meterstream._digits`) or more than
    ``MAX_VALUE_CHARS`` characters.

    Raises:
        InvalidEventError: naming the field ``value``; nothing else, whatever
            *value* is.
    """
    try:
        kind = type(value)
        if kind is float:
            # Any float in this range fits: the common case costs one comparison.
            if (
                FLOAT_FITS_LOW <= value < FLOAT_FITS_HIGH
                or value == 0.0
                or -FLOAT_FITS_HIGH < value <= -FLOAT_FITS_LOW
            ):
                return value  # type: ignore[no-any-return]
            return _check_float(value)
        if kind is int:
            if -MAX_FAST_INT <= value <= MAX_FAST_INT:
                return value  # type: ignore[no-any-return]
            return _check_big_int(value)
        if isinstance(value, bool):
            raise InvalidEventError("value", value, "must be a number, not a bool")
        if isinstance(value, int):  # int subclasses (IntEnum, numpy ints register elsewhere)
            return check_value(int(value))
        if isinstance(value, float):
            return check_value(float(value))
        if isinstance(value, str):
            try:
                parsed = Decimal(str(value).strip())
            except (InvalidOperation, ValueError):
                raise InvalidEventError("value", value, "is not a number") from None
            return _check_decimal(parsed, value)
        if isinstance(value, Decimal):
            return _check_decimal(value, value)
    except InvalidEventError:
        raise
    except Exception as exc:  # a hostile __int__, __float__, strip() ...
        raise InvalidEventError(
            "value", value, f"cannot be read as a number ({type(exc).__name__})"
        ) from None
    raise InvalidEventError(
        "value", value, f"must be an int, float, Decimal or numeric string, not {kind.__name__}"
    )


def _check_float(value: float) -> float:
    if not math.isfinite(value):
        raise InvalidEventError("value", value, "must be finite")
    written = format_value(value)
    _check_written_length(value, len(written) - (value < 0))
    _check_digits(value, written)
    return value


def _check_big_int(value: int) -> int:
    if not -MAX_WRITTEN_INT <= value <= MAX_WRITTEN_INT:
        # Counted, not written out: str() of a huge int is slow, or refused.
        raise InvalidEventError("value", value, _TOO_MANY_DIGITS)
    _check_digits(value, format_value(value))
    return value


def _check_decimal(d: Decimal, shown: Any) -> Decimal:
    if not d.is_finite():
        raise InvalidEventError("value", shown, "must be finite")
    _check_written_length(shown, _written_length(d))
    _check_digits(shown, format_value(d))
    return d


_TOO_MANY_DIGITS = f"has more than {MAX_DIGITS} digits as written (Stripe refuses it)"


def _check_digits(shown: Any, written: str) -> None:
    if too_many_digits(written):  # the one rule, on what goes on the wire
        raise InvalidEventError("value", shown, _TOO_MANY_DIGITS)


def _written_length(d: Decimal) -> int:
    """Characters of ``format_value(d)`` without its sign, computed, not written."""
    _, digits, exponent = d.as_tuple()
    n = len(digits)
    while n > 1 and digits[n - 1] == 0:  # 1.50 is written 1.5, 1E+3 as 1000
        n -= 1
        exponent += 1  # type: ignore[operator]
    if n == 1 and digits[0] == 0:
        return 1  # zero, whatever its exponent
    point = n + exponent  # type: ignore[operator]  # digits before the decimal point
    if exponent >= 0:  # type: ignore[operator]
        return point
    if point > 0:
        return n + 1
    return 2 - exponent  # type: ignore[operator]  # "0." then zeros and the digits


def _check_written_length(shown: Any, length: int) -> None:
    if length > MAX_VALUE_CHARS:
        raise InvalidEventError(
            "value",
            shown,
            f"would be written with {length} characters; at most {MAX_VALUE_CHARS} "
            "(without the sign) are sent",
        )


def check_dimensions(dimensions: Any, reserved: tuple[str, ...] = ()) -> Optional[dict[str, str]]:
    """Validate meter dimensions: a dict of string keys to string values.

    *reserved* are the payload keys already used for the customer and value.
    """
    if dimensions is None:
        return None
    if not isinstance(dimensions, Mapping):
        raise InvalidEventError("dimensions", dimensions, "must be a dict of str to str")
    try:
        return _check_dimension_items(dimensions, reserved)
    except InvalidEventError:
        raise
    except Exception as exc:  # a Mapping whose items() or iteration raises
        raise InvalidEventError(
            "dimensions", dimensions, f"cannot be read ({safe_type_name(exc)})"
        ) from None


def _check_dimension_items(
    dimensions: Mapping[Any, Any], reserved: tuple[str, ...]
) -> Optional[dict[str, str]]:
    result: dict[str, str] = {}
    for key, val in dimensions.items():
        if type(key) is not str:
            if not isinstance(key, str):
                raise InvalidEventError(
                    "dimensions", key, f"keys must be strings of 1..{MAX_NAME} characters"
                )
            key = _exact_str(key)
        if not 1 <= len(key) <= MAX_NAME:
            raise InvalidEventError(
                "dimensions", key, f"keys must be strings of 1..{MAX_NAME} characters"
            )
        if key in reserved:
            raise InvalidEventError(
                f"dimensions[{key!r}]", val, "clashes with the customer or value payload key"
            )
        if type(val) is not str:
            if not isinstance(val, str):
                raise InvalidEventError(f"dimensions[{key!r}]", val, "must be a string")
            val = _exact_str(val)
        result[key] = val
    return result or None


def check_timestamp(timestamp: Any, now: Optional[float] = None) -> float:
    """Return *timestamp* (an aware datetime or Unix seconds) as Unix seconds.

    Raises:
        InvalidEventError: naming the field ``timestamp``; nothing else,
            whatever *timestamp* is.
    """
    try:
        return _check_timestamp(timestamp, now)
    except InvalidEventError:
        raise
    except OverflowError:  # 10**400 seconds, or a datetime past year 9999
        raise InvalidEventError("timestamp", timestamp, "is too large to be a time") from None
    except Exception as exc:  # a hostile utcoffset(), __float__ ...
        raise InvalidEventError(
            "timestamp", timestamp, f"cannot be read as a time ({safe_type_name(exc)})"
        ) from None


def _check_timestamp(timestamp: Any, now: Optional[float]) -> float:
    if isinstance(timestamp, bool):
        raise InvalidEventError("timestamp", timestamp, "must be a datetime or Unix seconds")
    if isinstance(timestamp, (int, float)):
        seconds = float(timestamp)
        if not math.isfinite(seconds):
            raise InvalidEventError("timestamp", timestamp, "must be finite")
    elif hasattr(timestamp, "utcoffset") and hasattr(timestamp, "timestamp"):
        if timestamp.utcoffset() is None:
            raise InvalidEventError(
                "timestamp", timestamp, "must be timezone-aware (use datetime.timezone.utc)"
            )
        seconds = float(timestamp.timestamp())
    else:
        raise InvalidEventError("timestamp", timestamp, "must be a datetime or Unix seconds")
    now = time.time() if now is None else now
    if seconds < now - PAST_WINDOW:
        raise InvalidEventError("timestamp", timestamp, "is more than 35 days in the past")
    if seconds > now + FUTURE_WINDOW:
        raise InvalidEventError("timestamp", timestamp, "is more than 5 minutes in the future")
    return seconds


# The written form is what Stripe counts digits in; the encoder writes the same.
def format_value(value: Union[int, float, Decimal]) -> str:
    """Write a checked value the way Stripe reads it: a plain decimal string."""
    if type(value) is int:
        return value.__str__()
    if isinstance(value, float):
        text = format(value, ".15g")
        if "e" not in text:
            return "0" if text == "-0" else text
        value = Decimal(text)
    text = format(value.normalize(), "f")  # type: ignore[union-attr]
    return "0" if text in ("-0", "0") else text


#: What ``on_error=`` accepts on ``meter()`` and ``metering()``.
ON_ERROR = ("skip", "record")


def check_on_error(on_error: Any) -> str:
    if type(on_error) is not str or on_error not in ON_ERROR:
        raise InvalidEventError("on_error", on_error, "must be 'skip' or 'record'")
    return on_error
