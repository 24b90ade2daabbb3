"""Events: the recorded tuple, identifiers and the wire encoding.

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
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable, Optional, Union, overload

from meterstream._record.checks import format_value

__all__ = [
    "EventBatch",
    "RawEvent",
    "format_timestamp",
    "identifier_prefix",
    "next_sequence",
    "prefix_from_bytes",
    "prefix_to_bytes",
    "to_wire",
]

RawEvent = tuple[str, str, Any, float, Union[int, str], Optional[Mapping[str, str]]]

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


def prefix_to_bytes(prefix: str) -> bytes:
    """The 10 random bytes a prefix of :func:`identifier_prefix` is made of (a
    journal segment keeps them, for the numbers its frames hold)."""
    if len(prefix) != 20 or not prefix.startswith("ms_") or not prefix.endswith("_"):
        raise ValueError(f"not an identifier prefix: {prefix!r}")
    return base64.b32decode(prefix[3:-1].upper())


def prefix_from_bytes(raw: bytes) -> str:
    """The prefix :func:`prefix_to_bytes` was given."""
    return "ms_" + base64.b32encode(raw).decode("ascii").lower() + "_"


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


# -- wire encoding (flusher thread) ------------------------------------------------


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

    Made by the client's delivery; to make one yourself (testing an exporter),
    use :meth:`of`.

    Args:
        raw: the recorded uses, as the record path keeps them (tuples of
            event name, customer, value, timestamp, identifier, dimensions).
        keys_for: the payload keys ``(customer_key, value_key)`` of an event
            name (the ``payload_keys`` setting).
        prefix: the prefix of generated identifiers; default this process's.
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
        """A batch of events already in wire shape (to test an exporter).

        Args:
            events: wire-shape dicts (``identifier``, ``event_name``,
                ``timestamp``, ``payload``), sent as they are.

        Returns:
            A batch holding a copy of the list (the dicts themselves are
            shared), in the given order.
        """
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
        """The event name of each event, in order.

        Returns:
            One name per event, read without encoding the batch.
        """
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
        """The events at *indices*, in a new batch: same identifiers, same encoding.

        Args:
            indices: positions of events in this batch, in the order wanted.

        Returns:
            A new batch of those events, with this batch's identifier prefix
            (so a retried event keeps its identifier).
        """
        if self._wire is not None and not self._raw:
            return EventBatch.of([self._wire[i] for i in indices])
        raw = self._raw
        return EventBatch([raw[i] for i in indices], self._keys_for, self._prefix)

    def unencodable(self) -> list[tuple[int, str]]:
        """(index, reason) of each event that cannot be written on the wire.

        Validation at record time should make this empty; it is asked only
        after encoding the batch failed, so that one bad event (one that got
        past validation) is set aside instead of sinking its batch.

        Returns:
            ``(index, reason)`` pairs, the reason the exception's type and
            message (at most 200 characters); empty for a batch made by
            :meth:`of`.
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

    def raw_events(self) -> list[RawEvent]:
        """The recorded tuples this batch was made from (empty for wire events).

        Returns:
            The same tuple objects, in order: a spool recognises its rows by them.
        """
        return self._raw

    def timestamps(self) -> list[float]:
        """The time of each event (Unix seconds); empty for a batch of wire events.

        Returns:
            One timestamp per recorded use, in order; an empty list for a
            batch made by :meth:`of`.
        """
        return [event[3] for event in self._raw]

    def reportable(self) -> list[dict[str, Any]]:
        """The events as wire-shape dicts for ``on_delivery_error``, whatever they hold.

        Unlike iterating the batch, never fails: an event that cannot be
        encoded is shown with its fields as ``str()`` gives them.

        Returns:
            One wire-shape dict (``identifier``, ``event_name``,
            ``timestamp``, ``payload``) per event, in order.
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
        """The stream request body, ``{"events": [...]}``, as UTF-8 JSON bytes.

        Written straight from the recorded uses, without building the
        wire-shape dicts; it parses to the same events as iterating gives.

        Returns:
            The body of one Meter Event Stream request (ASCII-only JSON).
        """
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


def _no_keys(name: str) -> tuple[str, str]:  # pragma: no cover - of() batches have dicts
    raise AssertionError("a batch made from wire events has no raw events to encode")
