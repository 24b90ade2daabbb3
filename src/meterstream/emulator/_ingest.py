"""The hot path: check a stream body and split it into column lists.

A batch that looks like what a client library sends (every event an object
with exactly ``event_name``, ``payload``, ``identifier`` and ``timestamp``,
nothing seen before) is checked column by column with ``map`` and ``set``,
which run in C. Anything else takes a plain per-event loop that finds the
exact fault, fills in missing identifiers and timestamps, and drops
duplicates. Both give the same answer; only the speed differs.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from operator import itemgetter
from typing import Any, Optional, cast

from meterstream.emulator._validate import (
    FUTURE_WINDOW,
    MAX_STRING,
    PAST_WINDOW,
    TS_CACHE,
    check_envelope,
    explain_event,
    parse_rfc3339,
    range_error,
)

__all__ = ["Columns", "DEDUPE_WINDOW", "parse_batch"]

DEDUPE_WINDOW = 86400.0

# (identifiers, event names, payloads, timestamps, duplicates dropped)
Columns = tuple[list[str], list[str], list[dict[str, str]], list[float], int]

_NAME = itemgetter("event_name")
_PAYLOAD = itemgetter("payload")
_IDENT = itemgetter("identifier")
_TIMESTAMP = itemgetter("timestamp")
_STR = {str}
_DICT = {dict}
_FOUR = {4}


def parse_batch(
    body: object,
    now: float,
    seen: dict[str, float],
    *,
    check_range: bool,
    new_id: Callable[[], str],
) -> Columns:
    """Check a decoded body against Stripe's rules, all or nothing.

    Args:
        body: the decoded JSON body.
        now: the current time (default timestamp, windows).
        seen: identifier -> time received, for the 24-hour dedupe; not changed.
        check_range: a timestamp outside 35 days past / 5 minutes future is a 400.
        new_id: makes an identifier for an event that has none.

    Raises:
        StripeError: a 400 whose message names the first bad field.
    """
    events = check_envelope(body)
    columns = _fast(events, now, seen, check_range)
    if columns is None:
        columns = _slow(events, now, seen, check_range, new_id)
    return columns


def _fast(
    events: list[Any], now: float, seen: dict[str, float], check_range: bool
) -> Optional[Columns]:
    if set(map(type, events)) != _DICT or set(map(len, events)) != _FOUR:
        return None
    try:
        names: list[str] = list(map(_NAME, events))
        payloads: list[dict[str, str]] = list(map(_PAYLOAD, events))
        idents: list[str] = list(map(_IDENT, events))
        raw_ts: list[str] = list(map(_TIMESTAMP, events))
    except KeyError:
        return None
    types = set(map(type, names))
    types.update(map(type, idents), map(type, raw_ts))
    if (
        types != _STR
        or set(map(type, payloads)) != _DICT
        or not set(map(type, chain.from_iterable(map(dict.values, payloads)))) <= _STR
    ):
        return None
    lengths = set(map(len, names))
    lengths.update(map(len, idents))
    if min(lengths) < 1 or max(lengths) > MAX_STRING:
        return None
    found: list[Optional[float]] = list(map(TS_CACHE.get, raw_ts))
    if None in found:
        for i, stamp in enumerate(found):
            if stamp is None:
                found[i] = parse_rfc3339(raw_ts[i])
        if None in found:
            return None
    stamps = cast("list[float]", found)
    if check_range and (min(stamps) < now - PAST_WINDOW or max(stamps) > now + FUTURE_WINDOW):
        return None
    if len(set(idents)) != len(idents) or any(map(seen.__contains__, idents)):
        return None
    return idents, names, payloads, stamps, 0


def _slow(
    events: list[Any],
    now: float,
    seen: dict[str, float],
    check_range: bool,
    new_id: Callable[[], str],
) -> Columns:
    low, high = now - PAST_WINDOW, now + FUTURE_WINDOW
    given: list[Optional[str]] = []
    names: list[str] = []
    payloads: list[dict[str, str]] = []
    stamps: list[float] = []
    batch: set[str] = set()
    dups = 0
    for i, ev in enumerate(events):
        if type(ev) is not dict:
            explain_event(i, ev)
        name = ev.get("event_name")
        payload = ev.get("payload")
        ident = ev.get("identifier")
        raw_ts = ev.get("timestamp")
        if (
            type(name) is not str
            or not 0 < len(name) <= MAX_STRING
            or type(payload) is not dict
            or len(ev) != 2 + (ident is not None) + (raw_ts is not None)
            or (ident is not None and (type(ident) is not str or not 0 < len(ident) <= MAX_STRING))
        ):
            explain_event(i, ev)
        for value in payload.values():
            if type(value) is not str:
                explain_event(i, ev)
        ts = now
        if raw_ts is not None:
            parsed = parse_rfc3339(raw_ts) if type(raw_ts) is str else None
            if parsed is None:
                explain_event(i, ev)
            ts = parsed
            if check_range and not low <= ts <= high:
                range_error(i, ts, now)
        if ident is not None:
            received = seen.get(ident)
            if ident in batch or (received is not None and now - received < DEDUPE_WINDOW):
                dups += 1
                continue
            batch.add(ident)
        given.append(ident)
        names.append(name)
        payloads.append(payload)
        stamps.append(ts)
    # Identifiers are made only once the whole body is known to be good.
    idents = [ident if ident is not None else new_id() for ident in given]
    return idents, names, payloads, stamps, dups
