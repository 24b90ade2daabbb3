"""Stripe's rule for a meter event value: at most 15 digits as written.

Stripe refuses values with more than 15 significant digits
(``meter_event_value_too_many_digits``, API version 2026-04-22), because it
keeps them as doubles. Its changelog does not say whether the trailing zeros
of an integer count ("100000000000000000000"): the message it gives reads
"can have at most 15 digits", and the emulator took them as counted. So this
is the one definition, read the safe way: every digit of the plain decimal
form counts, except the leading zeros (``0.000123`` has 3). Everything
``record()`` accepts passes it, so Stripe can take it under either reading.

A leaf shared by the record path's checks, the wire encoding, the 15-digit
split of aggregated sums and the emulator's validation: one module, so that
what the library sends and what its stand-in for Stripe accepts cannot drift.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Optional

__all__ = ["MAX_DIGITS", "digits_as_written", "too_many_digits"]

#: The most digits a value may be written with.
MAX_DIGITS = 15

_PLAIN = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")
#: Exponents past this are not written out to be counted: they are too many digits.
_MAX_EXPONENT = 400


def digits_as_written(text: str) -> Optional[int]:
    """The digits of the number *text*, leading zeros aside, or None when it is not one.

    A plain decimal (``"-12.50"``: 4) is counted as written; a number with an
    exponent (``"1e20"``: 21) as its plain decimal form, since that is the
    value a double would carry.
    """
    if not _PLAIN.match(text):
        try:
            number = Decimal(text)
        except (InvalidOperation, ValueError):
            return None
        if not number.is_finite() or "_" in text or text != text.strip():
            return None
        if abs(number.adjusted()) > _MAX_EXPONENT:
            return _MAX_EXPONENT
        text = format(number, "f")
    digits = text.lstrip("+-").replace(".", "").lstrip("0")
    return len(digits)


def too_many_digits(text: str) -> bool:
    """True when the number *text* has more than :data:`MAX_DIGITS` digits as written."""
    count = digits_as_written(text)
    return count is not None and count > MAX_DIGITS
