"""Events: validation the way Stripe validates, and the wire encoding.

A recorded use is kept as a plain tuple until the flusher encodes it, so the
record path pays for no object construction, string formatting or JSON:

    (event_name, customer, value, timestamp, identifier, dimensions)

``value`` is an int, float or Decimal already checked; ``timestamp`` is Unix
seconds; ``identifier`` is a string, or an int sequence number that becomes
``<process prefix><number>`` when encoded; ``dimensions`` is a dict or None.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Optional, Union, overload

from .errors import InvalidEventError, safe_type_name

__all__ = [
    "MAX_DIGITS",
    "MAX_VALUE_CHARS",
    "EventBatch",
    "RawEvent",
    "check_customer",
    "check_dimensions",
    "check_event_name",
    "check_identifier",
    "check_timestamp",
    "check_value",
    "format_timestamp",
    "format_value",
    "identifier_prefix",
    "next_sequence",
    "to_wire",
]

RawEvent = tuple[str, str, Any, float, Union[int, str], Optional[Mapping[str, str]]]

#: Stripe rejects values with more significant digits than this
#: (``meter_event_value_too_many_digits``, API version 2026-04-22).
MAX_DIGITS = 15
#: Integers in this range have at most 15 digits: the record path's fast check.
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
#: Every float in [FLOAT_FITS_LOW, FLOAT_FITS_HIGH) is written with at most
#: MAX_VALUE_CHARS characters (15 significant digits): the fast check.
FLOAT_FITS_LOW = 1e-22
FLOAT_FITS_HIGH = 1e24
PAST_WINDOW = 35 * 24 * 3600.0
FUTURE_WINDOW = 5 * 60.0


# -- identifiers ------------------------------------------------------------


def _new_prefix() -> str:
    # 80 random bits: unique across processes and restarts without a uuid4
    # per event; the per-event part is a counter, in decimal (str() of an
    # int is the cheapest formatting there is).
    return "ms_" + base64.b32encode(os.urandom(10)).decode("ascii").lower() + "_"


_prefix = _new_prefix()
_prefix_pid = os.getpid()
_sequence = itertools.count(1)
#: Returns the next sequence number; ``itertools.count`` is atomic under the GIL.
next_sequence = _sequence.__next__


def identifier_prefix() -> str:
    return _prefix


def _reset_after_fork() -> None:
    # A forked child must never mint the identifiers its parent mints: a new
    # prefix is enough (the counter goes on, which is harmless).
    global _prefix, _prefix_pid
    _prefix = _new_prefix()
    _prefix_pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def ensure_fresh_prefix_after_fork() -> None:
    """Called by clients that notice a fork the hooks missed (pid check)."""
    if _prefix_pid != os.getpid():
        _reset_after_fork()


# -- validation ---------------------------------------------------------------


def _exact_str(text: str) -> str:
    """A str subclass as a plain str: its overridden methods are not ours to call."""
    return str.__str__(text)


#: Event names already checked: few per application, asked for on every
#: record() call. Bounded, so that generated names cannot grow it for ever.
_known_names: set[str] = set()
_MAX_KNOWN_NAMES = 1024


def check_event_name(name: Any) -> str:
    if type(name) is str and name in _known_names:
        return name
    if type(name) is not str:
        if not isinstance(name, str):
            raise InvalidEventError("event_name", name, "must be a string")
        name = _exact_str(name)
    if not 1 <= len(name) <= MAX_NAME:
        raise InvalidEventError("event_name", name, f"must be 1..{MAX_NAME} characters")
    if not name.isprintable() or name.isspace():
        raise InvalidEventError("event_name", name, text_problem(name))
    if len(_known_names) < _MAX_KNOWN_NAMES:
        _known_names.add(name)  # atomic under the GIL; a lost race costs a re-check
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


def check_customer(customer: Any) -> str:
    if type(customer) is not str:
        if type(customer) is InvalidCustomer:
            raise InvalidEventError("customer", customer.value, customer.reason)
        if not isinstance(customer, str):
            raise InvalidEventError("customer", customer, NOT_A_CUSTOMER)
        customer = _exact_str(customer)
    reason = customer_problem(customer)
    if reason:
        raise InvalidEventError("customer", customer, reason)
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


def _significant_digits(d: Decimal) -> int:
    digits = d.as_tuple().digits
    # Trailing zeros of the coefficient are not significant (1E+20, 1.50).
    n = len(digits)
    while n > 1 and digits[n - 1] == 0:
        n -= 1
    return n


def check_value(value: Any) -> Union[int, float, Decimal]:
    """Return *value* as it will be kept (int, float or Decimal), or raise.

    Accepts ints, floats, Decimals and numeric strings; refuses bools,
    non-finite numbers, more than 15 significant digits (ints and Decimals;
    floats are written with 15 significant digits, so they always fit), and
    values whose plain decimal form (what goes on the wire: Stripe reads no
    exponents) would need more than ``MAX_VALUE_CHARS`` characters.

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
    _check_written_length(value, len(format_value(value)) - (value < 0))
    return value


def _check_big_int(value: int) -> int:
    if not -MAX_WRITTEN_INT <= value <= MAX_WRITTEN_INT:
        # Counted, not written out: str() of a huge int is slow, or refused.
        raise InvalidEventError(
            "value", value, f"would be written with more than {MAX_VALUE_CHARS} characters"
        )
    if _significant_digits(Decimal(value)) > MAX_DIGITS:
        raise InvalidEventError("value", value, f"has more than {MAX_DIGITS} significant digits")
    return value


def _check_decimal(d: Decimal, shown: Any) -> Decimal:
    if not d.is_finite():
        raise InvalidEventError("value", shown, "must be finite")
    if _significant_digits(d) > MAX_DIGITS:
        raise InvalidEventError("value", shown, f"has more than {MAX_DIGITS} significant digits")
    _check_written_length(shown, _written_length(d))
    return d


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


# -- wire encoding (flusher thread) ------------------------------------------------


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


_second_cache: tuple[int, str] = (-1, "")


def format_timestamp(seconds: float) -> str:
    """RFC 3339, UTC, millisecond precision: ``2024-06-01T12:00:00.000Z``."""
    global _second_cache
    whole, millis = divmod(int(seconds * 1000.0 + 0.5), 1000)
    cached_second, prefix = _second_cache  # one tuple: read and replaced atomically
    if cached_second != whole:
        # Events come in bursts within one second: format each second once.
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second_cache = (whole, prefix)
    return f"{prefix}.{millis:03d}Z"


def to_wire(
    event: RawEvent, customer_key: str, value_key: str, prefix: Optional[str] = None
) -> dict[str, Any]:
    """Encode one recorded use as a Stripe meter event (the stream's wire shape)."""
    name, customer_id, value, timestamp, identifier, dimensions = event
    if prefix is None:
        prefix = _prefix
    payload = {customer_key: customer_id, value_key: format_value(value)}
    if dimensions:
        payload.update(dimensions)
    return {
        "identifier": identifier if type(identifier) is str else prefix + str(identifier),
        "event_name": name,
        "timestamp": format_timestamp(timestamp),
        "payload": payload,
    }


_json_str = json.JSONEncoder(ensure_ascii=True).encode


class EventBatch(Sequence[dict[str, Any]]):
    """A batch of recorded uses on their way out, encoded at most once.

    What :meth:`meterstream.Exporter.export` receives. Its stable surface:
    ``len(batch)``; iteration and indexing, which give wire-shape dicts
    (``identifier``, ``event_name``, ``timestamp``, ``payload``) built on
    first access; :meth:`to_json`, the stream's request body written straight
    from the recorded tuples, without those dicts (the Stripe exporter's
    path); :meth:`event_names`; and :meth:`of`, a batch of given wire dicts
    (to test an exporter). Other methods serve delivery and may change.

    The identifier prefix is fixed when the batch is made, so a batch keeps
    its identifiers through every retry.
    """

    __slots__ = ("_keys_for", "_prefix", "_raw", "_wire")

    def __init__(
        self,
        raw: list[RawEvent],
        keys_for: Callable[[str], tuple[str, str]],
        prefix: Optional[str] = None,
    ) -> None:
        self._raw = raw
        self._keys_for = keys_for
        self._prefix = _prefix if prefix is None else prefix
        self._wire: Optional[list[dict[str, Any]]] = None

    @classmethod
    def of(cls, events: list[dict[str, Any]]) -> EventBatch:
        """A batch of events already in wire shape."""
        batch = cls([], _no_keys)
        batch._wire = list(events)
        return batch

    def _events(self) -> list[dict[str, Any]]:
        wire = self._wire
        if wire is None:
            keys: dict[str, tuple[str, str]] = {}
            prefix = self._prefix
            wire = []
            for event in self._raw:
                pair = keys.get(event[0])
                if pair is None:
                    pair = keys[event[0]] = self._keys_for(event[0])
                wire.append(to_wire(event, pair[0], pair[1], prefix))
            self._wire = wire
        return wire

    def __len__(self) -> int:
        return len(self._wire) if self._wire is not None else len(self._raw)

    def event_names(self) -> list[str]:
        """The event name of each event, in order."""
        if self._wire is not None:
            return [event["event_name"] for event in self._wire]
        return [event[0] for event in self._raw]

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: Any) -> Any:
        return self._events()[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._events())

    def __repr__(self) -> str:
        return f"<EventBatch of {len(self)} events>"

    # -- for delivery: a batch that must lose some of its events ---------------------

    def subset(self, indices: Sequence[int]) -> EventBatch:
        """The events at *indices*, in a new batch: same identifiers, same encoding."""
        if self._wire is not None and not self._raw:
            return EventBatch.of([self._wire[i] for i in indices])
        raw = self._raw
        return EventBatch([raw[i] for i in indices], self._keys_for, self._prefix)

    def unencodable(self) -> list[tuple[int, str]]:
        """(index, reason) of each event that cannot be written on the wire.

        Validation at record time should make this empty; it is asked only
        after encoding the batch failed, so that one bad event (one that got
        past validation) is set aside instead of sinking its batch.
        """
        bad: list[tuple[int, str]] = []
        for i, event in enumerate(self._raw):
            try:
                EventBatch([event], self._keys_for, self._prefix).to_json()
                customer_key, value_key = self._keys_for(event[0])
                _json_str(to_wire(event, customer_key, value_key, self._prefix))
            except Exception as exc:
                bad.append((i, f"{type(exc).__name__}: {exc}"[:200]))
        return bad

    def timestamps(self) -> list[float]:
        """The time of each event (Unix seconds); empty for a batch of wire events."""
        return [event[3] for event in self._raw]

    def reportable(self) -> list[dict[str, Any]]:
        """The events as wire-shape dicts for ``on_delivery_error``, whatever they hold.

        Unlike iterating the batch, never fails: an event that cannot be
        encoded is shown with its fields as ``str()`` gives them.
        """
        if self._wire is not None:
            return list(self._wire)
        out: list[dict[str, Any]] = []
        for event in self._raw:
            keys = ("stripe_customer_id", "value")
            try:
                keys = self._keys_for(event[0])
                out.append(to_wire(event, keys[0], keys[1], self._prefix))
            except Exception:
                out.append(_as_reported(event, self._prefix, keys))
        return out

    def to_json(self) -> bytes:
        """The stream request body, ``{"events": [...]}``, as UTF-8 JSON bytes."""
        if self._wire is not None:
            return _json_str({"events": self._wire}).encode()
        # What events share is made once a batch (per event name, customer
        # and second), so that the common event (generated identifier, no
        # dimensions) costs one f-string: about 0.6 us an event on a small
        # VM, where a %-template cost 1 us. This runs on a delivery thread,
        # under the GIL the app's own threads need.
        head = '{"identifier":"' + self._prefix
        forms: dict[str, tuple[str, str, str, dict[str, str], dict[float, str]]] = {}
        millis_text = _MILLIS
        parts: list[str] = []
        append = parts.append
        last_name = None
        middle = payload = value_part = ""
        tails: dict[str, str] = {}
        seconds: dict[float, str] = {}
        for name, customer_id, value, timestamp, identifier, dimensions in self._raw:
            if name is not last_name:
                form = forms.get(name)
                if form is None:
                    customer_key, value_key = self._keys_for(name)
                    form = forms[name] = (
                        ',"event_name":' + _json_str(name) + ',"timestamp":"',
                        'Z","payload":{' + _json_str(customer_key) + ":",
                        "," + _json_str(value_key) + ':"',
                        {},
                        {},
                    )
                middle, payload, value_part, tails, seconds = form
                last_name = name
            # Z","payload":{"stripe_customer_id":"cus_1","value":"
            tail = tails.get(customer_id)
            if tail is None:
                tail = tails[customer_id] = payload + _json_str(customer_id) + value_part
            # format_timestamp()'s rounding, in float arithmetic: Python's
            # ints past 2**30 take its slow multi-digit paths. fmod is exact,
            # so *rest* is the milliseconds within the second, and
            # millis - rest the second's start, exactly.
            millis = timestamp * 1000.0 + 0.5
            rest = millis % 1000.0
            # ,"event_name":"x","timestamp":"2026-11-23T22:45:13.
            stamp = seconds.get(millis - rest)
            if stamp is None:
                whole = (millis - rest) / 1000.0
                stamp = seconds[millis - rest] = middle + time.strftime(
                    "%Y-%m-%dT%H:%M:%S.", time.gmtime(whole)
                )
            ms = millis_text[int(rest)]
            text = value if type(value) is int else format_value(value)
            if type(identifier) is str:
                ident = '{"identifier":' + _json_str(identifier)
            elif not dimensions:
                append(f'{head}{identifier}"{stamp}{ms}{tail}{text}"}}}}')
                continue
            else:
                ident = f'{head}{identifier}"'
            extra = "," + _json_str(dimensions)[1:-1] if dimensions else ""
            append(f'{ident}{stamp}{ms}{tail}{text}"{extra}}}}}')
        return ('{"events":[' + ",".join(parts) + "]}").encode()


#: "000" to "999": the milliseconds of a timestamp, without a format call each.
_MILLIS = tuple(f"{n:03d}" for n in range(1000))


def _as_reported(event: RawEvent, prefix: str, keys: tuple[str, str]) -> dict[str, Any]:
    """An event that cannot be encoded, shown as well as it can be."""
    name, customer_id, value, timestamp, identifier, dimensions = event
    try:
        when = format_timestamp(timestamp)
    except Exception:
        when = str(timestamp)
    payload: dict[str, Any] = {keys[0]: str(customer_id), keys[1]: str(value)}
    if dimensions:
        payload.update({str(k): str(v) for k, v in dimensions.items()})
    return {
        "identifier": identifier if type(identifier) is str else prefix + str(identifier),
        "event_name": str(name),
        "timestamp": when,
        "payload": payload,
    }


def _literal(text: str) -> str:
    """*text* as a JSON string, safe inside a %-format template."""
    return _json_str(text).replace("%", "%%")


def _no_keys(name: str) -> tuple[str, str]:  # pragma: no cover - of() batches have dicts
    raise AssertionError("a batch made from wire events has no raw events to encode")
