"""Reconciliation: what the spool says Stripe accepted, beside what Stripe billed.

For each customer, meter and window (an hour or a UTC day), the spool's
accepted events are aggregated the way the meter aggregates them (``sum``,
``count`` or ``last``) and compared with Stripe's meter event summaries.

Stripe's summaries are eventually consistent: a window holding an event
accepted less than *grace* seconds ago, or an event whose cancellation Stripe
accepted less than *grace* seconds ago (an adjustment is processed
asynchronously), is not compared yet, but reported as settling; once the
grace has passed, a cancelled event Stripe still counts is a difference.
Events Stripe refused (a 400, or its asynchronous error reports
once ``handle_webhook`` moved them to the dead letters) are not in the
spool's accepted history, so they are expected to be missing at Stripe too.
An event cancelled through ``cancel()`` (a meter event adjustment) is left
out of the spool's side too, as the meter leaves it out: agreement. One
cancelled some other way (the Dashboard, another client) still shows as a
difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Optional, Protocol

from meterstream._spool.spool import Spool

__all__ = [
    "WINDOWS",
    "Reconciliation",
    "Row",
    "Summaries",
    "active_meters",
    "check_range",
    "reconcile",
]

WINDOWS = {"hour": 3600, "day": 86400}
#: Stripe may take a few minutes to count an accepted event in its summaries.
DEFAULT_GRACE = 600.0
#: Stripe reports aggregated values as floats: equal within this much.
_RELATIVE = Decimal("1e-12")
_ABSOLUTE = Decimal("1e-9")


class Summaries(Protocol):
    """What reconciliation reads from Stripe (``StripeAPI`` implements it)."""

    def meters(self) -> list[dict[str, Any]]: ...

    def event_summaries(
        self,
        meter_id: str,
        customer: str,
        start_time: int,
        end_time: int,
        window: Optional[str] = None,
    ) -> list[dict[str, Any]]: ...


@dataclass
class Row:
    """One customer, meter and window: the spool's value beside Stripe's.

    Across destinations (:func:`meterstream._truth.destinations.reconcile_destinations`)
    ``spool`` is the first destination's value and ``stripe`` the second's
    (the result's ``labels`` name them).
    """

    customer: str
    event_name: str
    meter: Optional[str]
    start: int
    end: int
    spool: Decimal
    stripe: Decimal
    events: int
    settling: bool = False

    @property
    def difference(self) -> Decimal:
        """Stripe's value minus the spool's."""
        return self.stripe - self.spool

    @property
    def agrees(self) -> bool:
        if self.meter is None:
            return self.spool == 0
        scale = max(abs(self.spool), abs(self.stripe))
        return abs(self.difference) <= max(_ABSOLUTE, scale * _RELATIVE)


@dataclass
class Reconciliation:
    """Every compared row, and what could not be compared."""

    rows: list[Row] = field(default_factory=list)
    #: Event names with accepted events but no active meter at Stripe.
    no_meter: set[str] = field(default_factory=set)
    #: What the two values of a row are: (the spool, the destination), or
    #: the two destinations compared.
    labels: tuple[str, str] = ("spool", "stripe")
    #: Where ``no_meter`` names lack a meter, as the table says it.
    no_meter_where: str = "at Stripe"

    @property
    def differing(self) -> list[Row]:
        return [row for row in self.rows if not row.settling and not row.agrees]

    @property
    def settling(self) -> list[Row]:
        return [row for row in self.rows if row.settling]

    @property
    def agrees(self) -> bool:
        return not self.differing


def check_range(since: int, until: int, window: str) -> Optional[str]:
    """Why these times cannot be reconciled, or None (Stripe's alignment rules)."""
    if window not in WINDOWS:
        return f"--window must be hour or day, got {window!r}"
    if until <= since:
        return "--until must be after --since"
    step = WINDOWS[window]
    what = "an hour" if window == "hour" else "a UTC midnight"
    for flag, value in (("--since", since), ("--until", until)):
        if value % step:
            return (
                f"{flag} must fall on {what} with --window {window} (e.g. {value - value % step})"
            )
    return None


def reconcile(
    spool: Spool,
    stripe: Summaries,
    since: int,
    until: int,
    *,
    window: str = "day",
    event_name: Optional[str] = None,
    grace: float = DEFAULT_GRACE,
    now: float,
    destination: str = "stripe",
) -> Reconciliation:
    """Compare the spool's accepted events with Stripe's summaries (or with
    another destination's, read the same way: *destination* names it).

    Raises:
        ValueError: unaligned times or an unknown window (:func:`check_range`).
        meterstream.DeliveryError: Stripe could not be read.
    """
    problem = check_range(since, until, window)
    if problem:
        raise ValueError(problem)
    step = WINDOWS[window]
    meters = active_meters(stripe.meters())
    # Less what was cancelled at Stripe: its meter no longer counts it either.
    # (Metronome cannot cancel: an event stays billed there.)
    held = (
        spool.cancellations.billed_between(since, until, event_name)
        if destination == "stripe"
        else spool.accepted_between(since, until, event_name)
    )
    mine = _aggregate(held, meters, since, step)
    # A cancelled event's window is compared too, even when nothing else is
    # left in it: Stripe must have stopped counting it. An adjustment Stripe
    # accepted less than *grace* ago may not be applied to its summaries yet
    # (it is "pending" until processed), so that window is settling.
    recent: set[tuple[str, str, int]] = set()
    if destination == "stripe":
        for name, customer, ts, cancelled_at in spool.cancellations.cancelled_events(
            since, until, event_name
        ):
            if name not in meters:
                continue
            start = since + int((ts - since) // step) * step
            mine.setdefault((name, customer), {})
            if cancelled_at > now - grace:
                recent.add((name, customer, start))
    result = Reconciliation(labels=("spool", destination))
    if destination != "stripe":
        result.no_meter_where = f"at {destination.capitalize()}"
    for (name, customer), windows in sorted(mine.items()):
        meter = meters.get(name)
        theirs: dict[int, Decimal] = {}
        if meter is None:
            result.no_meter.add(name)
        else:
            for summary in stripe.event_summaries(meter["id"], customer, since, until, window):
                value = Decimal(repr(float(summary["aggregated_value"])))
                theirs[int(summary["start_time"])] = value
        for start in sorted(set(windows) | set(theirs)):
            value, count, newest = windows.get(start, (Decimal(0), 0, 0.0))
            result.rows.append(
                Row(
                    customer=customer,
                    event_name=name,
                    meter=None if meter is None else meter["id"],
                    start=start,
                    end=min(start + step, until),
                    spool=value,
                    stripe=theirs.get(start, Decimal(0)),
                    events=count,
                    settling=newest > now - grace or (name, customer, start) in recent,
                )
            )
    return result


def active_meters(meters: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """The active meters, by event name (the first of each name)."""
    out: dict[str, Mapping[str, Any]] = {}
    for meter in meters:
        if meter.get("status", "active") == "active" and meter.get("event_name"):
            out.setdefault(str(meter["event_name"]), meter)
    return out


def _aggregate(
    events: Iterable[tuple[str, str, Any, float, float]],
    meters: Mapping[str, Mapping[str, Any]],
    since: int,
    step: int,
) -> dict[tuple[str, str], dict[int, tuple[Decimal, int, float]]]:
    """Per (event name, customer) and window start: (value, events, newest acceptance)."""
    out: dict[tuple[str, str], dict[int, tuple[Decimal, int, float]]] = {}
    last_seen: dict[tuple[str, str, int], tuple[float, float]] = {}
    for name, customer, value, ts, accepted_at in events:
        meter = meters.get(name)
        formula = (meter or {}).get("default_aggregation", {}).get("formula", "sum")
        start = since + int((ts - since) // step) * step
        windows = out.setdefault((name, customer), {})
        total, count, newest = windows.get(start, (Decimal(0), 0, 0.0))
        amount = _decimal(value)
        if formula == "count":
            total = Decimal(count + 1)
        elif formula == "last":
            key = (name, customer, start)
            if (ts, accepted_at) >= last_seen.get(key, (float("-inf"), float("-inf"))):
                last_seen[key] = (ts, accepted_at)
                total = amount
        else:
            total += amount
        windows[start] = (total, count + 1, max(newest, accepted_at))
    return out


def _decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(format(value, ".15g"))
    return Decimal(value)


# -- output -------------------------------------------------------------------------


def render_table(result: Reconciliation, *, utc: Any) -> str:
    """The differing rows and a total line, as a person reads them."""
    lines: list[str] = []
    rows = result.differing
    if rows:
        header = ["customer", "event", "window (UTC)", *result.labels, "difference"]
        cells = [header] + [
            [
                row.customer,
                row.event_name + ("" if row.meter else " (no meter)"),
                utc(row.start),
                _number(row.spool),
                _number(row.stripe),
                _signed(row.difference),
            ]
            for row in rows
        ]
        widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
        for n, c in enumerate(cells):
            lines.append(
                "  ".join(
                    cell.ljust(w) if i < 3 else cell.rjust(w)
                    for i, (cell, w) in enumerate(zip(c, widths))
                ).rstrip()
            )
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
    compared = [row for row in result.rows if not row.settling]
    spool_total = sum((row.spool for row in rows), Decimal(0))
    stripe_total = sum((row.stripe for row in rows), Decimal(0))
    left, right = result.labels
    if rows:
        lines.append(
            f"total: {_count(len(rows), 'window')} of {len(compared)} differ "
            f"({left} {_number(spool_total)}, {right} {_number(stripe_total)}, "
            f"difference {_signed(stripe_total - spool_total)})"
        )
    elif compared:
        lines.append(f"total: all {_count(len(compared), 'window')} agree")
    elif result.settling:
        lines.append("total: nothing was compared yet: every window is within the grace period")
    else:
        lines.append("total: nothing to compare: no events in that range")
    if result.settling:
        lines.append(
            f"{_count(len(result.settling), 'window')} with events accepted or cancelled "
            "within the grace period were not compared yet (usage is counted with a lag): "
            "run again later"
        )
    if result.no_meter:
        lines.append(
            f"no active meter {result.no_meter_where} for: " + ", ".join(sorted(result.no_meter))
        )
    return "\n".join(lines) + "\n"


def to_json(result: Reconciliation) -> dict[str, Any]:
    """Everything, for a cron job: every row with its verdict."""
    return {
        "agrees": result.agrees,
        "differing": len(result.differing),
        "compared": sum(1 for row in result.rows if not row.settling),
        "settling": len(result.settling),
        "no_meter": sorted(result.no_meter),
        "rows": [
            {
                "customer": row.customer,
                "event_name": row.event_name,
                "meter": row.meter,
                "start_time": row.start,
                "end_time": row.end,
                result.labels[0]: str(row.spool),
                result.labels[1]: str(row.stripe),
                "difference": str(row.difference),
                "events": row.events,
                "status": "settling" if row.settling else "agrees" if row.agrees else "differs",
            }
            for row in result.rows
        ],
    }


def _number(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _signed(value: Decimal) -> str:
    return ("+" if value > 0 else "") + _number(value)


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "s")
