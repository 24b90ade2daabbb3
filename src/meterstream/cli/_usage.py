"""``meterstream usage --spool PATH``: what this machine recorded and what Stripe accepted.

Reads the spool's history of accepted events, its pending events and its dead
letters (``_spool.usage.read_usage``, read-only) and prints a table per group,
or one JSON object per line with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Optional, TextIO

from meterstream._spool.usage import GROUPINGS, KINDS, Number, UsageRow, read_usage
from meterstream.cli._args import TIME_HINT, parse_time, spool_arg
from meterstream.errors import ConfigurationError

__all__ = ["add_usage_parser", "run_usage"]


def add_usage_parser(sub: Any) -> None:
    """Add ``usage`` to the CLI's subparsers."""
    usage = sub.add_parser(
        "usage",
        help="totals from a spool: accepted by Stripe, pending, dead letters",
        description="What this machine recorded and what Stripe accepted, from the spool's "
        "history: per group, the events and their summed value accepted, still pending "
        "and dead. Events count by their timestamp (UTC); accepted events are kept for "
        "spool_history_days.",
    )
    spool_arg(usage)
    usage.add_argument(
        "--by", choices=GROUPINGS, default="customer", help="group rows by (default customer)"
    )
    usage.add_argument(
        "--customer", action="append", metavar="ID", help="only this customer (repeatable)"
    )
    usage.add_argument(
        "--since", type=parse_time, metavar="TIME", help=f"from this time: {TIME_HINT}"
    )
    usage.add_argument(
        "--until", type=parse_time, metavar="TIME", help=f"before this time: {TIME_HINT}"
    )
    usage.add_argument("--json", action="store_true", help="one JSON object per line")
    usage.set_defaults(parser=usage)


def run_usage(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    """Print the usage view; 2 with a hint for a spool that cannot be read."""
    out = sys.stdout if out is None else out
    if args.since is not None and args.until is not None and args.since >= args.until:
        args.parser.error("--since must be before --until")
    try:
        rows = read_usage(
            args.spool, by=args.by, customer=args.customer, since=args.since, until=args.until
        )
    except ConfigurationError as exc:
        message = str(exc)
        if message.startswith("spool_path: "):
            message = message[len("spool_path: ") :]
        args.parser.error(f"--spool {args.spool}: {message}")
    if args.json:
        for row in rows:
            out.write(json.dumps(_json(row, args.by)) + "\n")
    else:
        out.write(render(rows, args.by))
    return 0


def _key(row: UsageRow, by: str) -> list[str]:
    if by == "customer":
        return [row.customer or "", row.event_name]
    if by == "event":
        return [row.event_name]
    return [_when(row.start or 0, by), row.event_name]


def _when(start: int, by: str) -> str:
    moment = datetime.fromtimestamp(start, tz=timezone.utc)
    return moment.strftime("%Y-%m-%d %H:00Z" if by == "hour" else "%Y-%m-%d")


def _num(value: Number) -> str:
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
    elif isinstance(value, float):
        text = repr(value) if not value.is_integer() else str(int(value))
    else:
        text = str(value)
    whole, dot, fraction = text.partition(".")
    sign = "-" if whole.startswith("-") else ""
    return f"{sign}{int(whole.lstrip('-') or 0):,}{dot}{fraction}"


def _json(row: UsageRow, by: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if by == "customer":
        out["customer"] = row.customer
    if by in ("hour", "day"):
        out[by] = _when(row.start or 0, by)
        out["start_time"] = row.start
    out["event_name"] = row.event_name
    for kind in KINDS:
        out[f"{kind}_events"] = row.events[kind]
        # A string, as reconcile --json writes values: exact for decimals.
        out[f"{kind}_value"] = _plain(row.values[kind])
    return out


def _plain(value: Number) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def render(rows: list[UsageRow], by: str) -> str:
    """The table a person reads: one line per group, then the totals."""
    keys = {
        "customer": ["customer", "event"],
        "event": ["event"],
        "hour": ["hour (UTC)", "event"],
        "day": ["day (UTC)", "event"],
    }[by]
    header = keys + ["accepted", "value", "pending", "value", "dead", "value"]
    body: list[list[str]] = []
    totals_events = dict.fromkeys(KINDS, 0)
    for row in rows:
        cells = _key(row, by)
        for kind in KINDS:
            cells += [f"{row.events[kind]:,}", _num(row.values[kind])]
            totals_events[kind] += row.events[kind]
        body.append(cells)
    if not body:
        return "no events in this spool for that selection\n"
    total = ["total"] + [""] * (len(keys) - 1)
    for kind in KINDS:
        total += [f"{totals_events[kind]:,}", ""]
    widths = [max(len(r[i]) for r in [header, total, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < len(keys) else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    rule = line(["-" * w for w in widths])
    lines = [line(header), rule, *(line(r) for r in body), rule, line(total)]
    return "\n".join(lines) + "\n"
