"""``meterstream cancel --spool PATH``: take back accepted events, one or a range.

The events come from the spool's history of what Stripe accepted: one by
``--identifier``, or every event of ``--customer`` and ``--event`` with a
timestamp in ``[--since, --until)``. The command prints what it would cancel;
with ``--yes`` it records the cancellations in the spool (durable: a process
that dies before sending them leaves them to the next one) and sends them
through a client on that spool, waiting until they are settled.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

from meterstream.cli._args import (
    TIME_HINT,
    connection_args,
    connection_settings,
    parse_time,
    seconds,
    spool_arg,
)
from meterstream.errors import CancelError, ConfigurationError

__all__ = ["add_cancel_parser", "run_cancel"]

#: Stripe cancels an event only within this long of receiving it.
CANCEL_WINDOW = 86400.0


def add_cancel_parser(sub: Any) -> None:
    """Add ``cancel`` to the CLI's subparsers."""
    cancel = sub.add_parser(
        "cancel",
        help="cancel accepted events at Stripe (one, or a customer's range)",
        description="Cancel events Stripe accepted, found in the spool's history: one "
        "(--identifier) or every event of a customer and meter in [--since, --until). "
        "Prints what it would cancel; --yes does it. Stripe cancels only events it "
        "received within the last 24 hours.",
    )
    spool_arg(cancel)
    cancel.add_argument("--event", required=True, metavar="NAME", help="the event name")
    cancel.add_argument("--identifier", help="one event, by identifier")
    cancel.add_argument("--customer", help="every event of this customer (with --since/--until)")
    cancel.add_argument("--since", type=parse_time, metavar="TIME", help=TIME_HINT)
    cancel.add_argument("--until", type=parse_time, metavar="TIME", help=f"{TIME_HINT}, excluded")
    cancel.add_argument("--dry-run", action="store_true", help="print, cancel nothing")
    cancel.add_argument("--yes", action="store_true", help="confirm: cancel them")
    cancel.add_argument(
        "--timeout",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="wait this long for Stripe's answers (default 30)",
    )
    connection_args(cancel)
    cancel.set_defaults(parser=cancel)


def run_cancel(
    args: argparse.Namespace,
    print_: Callable[[str], None] = print,
    now: Callable[[], float] = time.time,
) -> int:
    """Run ``cancel``: 0 when everything asked for was cancelled (or would be), else 1."""
    from meterstream._spool.spool import Spool

    parser: argparse.ArgumentParser = args.parser
    if args.identifier is None:
        missing = [
            flag
            for flag, value in (
                ("--customer", args.customer),
                ("--since", args.since),
                ("--until", args.until),
            )
            if value is None
        ]
        if missing:
            parser.error(
                "give --identifier, or --customer with --since and --until "
                f"(missing {', '.join(missing)})"
            )
        if args.until <= args.since:
            parser.error(f"argument --until: {args.until} is not after --since {args.since}")
    elif args.customer is not None or args.since is not None or args.until is not None:
        parser.error("argument --identifier: not with --customer/--since/--until")
    connection = {} if args.dry_run else connection_settings(args, parser)
    try:
        spool = Spool(args.spool, repair=False, create=False)
    except ConfigurationError as exc:
        parser.error(f"argument --spool: {str(exc).split(': ', 1)[-1]}")
    try:
        if args.identifier is not None:
            found = spool.cancellations.accepted_event(args.identifier)
            rows = [] if found is None or found.event_name != args.event else [found]
            if not rows:
                print_(
                    f"no accepted {args.event!r} event {args.identifier!r} in the spool's history"
                )
                return 1
        else:
            rows = spool.cancellations.accepted_for(
                args.customer, args.event, args.since, args.until
            )
    finally:
        spool.close()
    at = now()
    fresh = [row for row in rows if at - row.accepted_at < CANCEL_WINDOW]
    old = [row for row in rows if at - row.accepted_at >= CANCEL_WINDOW]
    for row in rows:
        state = "too old (accepted over 24 h ago)" if row in old else "to cancel"
        print_(
            f"{row.identifier}  {row.customer}  value={row.value}  "
            f"at {_utc(row.timestamp)}  accepted {_utc(row.accepted_at)}  {state}"
        )
    print_(
        f"{len(fresh)} event{'' if len(fresh) == 1 else 's'} to cancel"
        + (f", {len(old)} too old for Stripe to cancel" if old else "")
    )
    if args.dry_run or not fresh:
        return 0 if not old else 1
    if not args.yes:
        print_("nothing cancelled: run again with --yes to cancel them")
        return 1
    return _cancel(args, connection, [row.identifier for row in fresh], print_) or (1 if old else 0)


def _cancel(
    args: argparse.Namespace,
    connection: dict[str, Any],
    identifiers: list[str],
    print_: Callable[[str], None],
) -> int:
    from meterstream._client.client import MeterClient

    failures: list[str] = []
    client = MeterClient(
        **connection,
        exporter="stripe",
        spool_path=args.spool,
        enabled=True,
        raise_errors=True,
        max_retry_time=args.timeout,
        on_delivery_error=lambda events, error: failures.append(str(error)),
    )
    refused = 0
    try:
        for identifier in identifiers:
            try:
                client.cancel(identifier, args.event)
            except CancelError as exc:
                refused += 1
                print_(f"{identifier}: {exc}")
        settled = client.flush(args.timeout)
        stats = client.stats()
    finally:
        client.shutdown(0)
    for failure in failures:
        print_(failure)
    print_(
        f"cancelled {stats['cancels_sent']} at Stripe, {stats['cancels_withdrawn']} before sending"
    )
    if not settled:
        print_(f"{stats['cancels_pending']} still waiting to be sent: they stay in the spool")
    return 0 if settled and not failures and not refused else 1


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
