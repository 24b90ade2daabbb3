"""The ``meterstream`` command: emulator, send, summary, demo.

Usage errors exit 2 with a one-line hint; failures exit 1 with the reason on
stderr; no user mistake prints a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from typing import Any, NoReturn, Optional

from .errors import MeterError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class CommandError(Exception):
    """A failure to report on stderr with exit status 1."""


def _parse_time(text: str) -> int:
    """Unix seconds from digits or an ISO 8601 date-time (UTC when no offset)."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither Unix seconds nor an ISO 8601 time"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp())


def _connection_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection (default: METERSTREAM_* / STRIPE_API_KEY)")
    group.add_argument("--api-key", help="Stripe secret key")
    group.add_argument("--api-base", help="base URL of the Stripe API")
    group.add_argument("--stream-base", help="base URL of the meter event stream")
    group.add_argument(
        "--base", metavar="URL", help="one base URL for both (e.g. a local emulator)"
    )


def _connection(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if args.api_key:
        settings["api_key"] = args.api_key
    if args.base:
        settings["api_base"] = settings["stream_base"] = args.base
    if args.api_base:
        settings["api_base"] = args.api_base
    if args.stream_base:
        settings["stream_base"] = args.stream_base
    return settings


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="meterstream",
        description="Usage metering for Stripe Meter Event Streams.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    sub.add_parser(
        "emulator",
        help="run the local Stripe emulator",
        add_help=False,
        description="Run the local Stripe emulator (see `meterstream emulator --help`).",
    )

    send = sub.add_parser("send", help="send one meter event and wait for delivery")
    send.add_argument("event_name", metavar="EVENT")
    send.add_argument("--customer", required=True, help="Stripe customer id (cus_...)")
    send.add_argument("--value", default="1", help="usage value (default 1)")
    send.add_argument("--identifier", help="unique event identifier (default: generated)")
    send.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
    _connection_args(send)

    summary = sub.add_parser("summary", help="print a meter's event summaries for a customer")
    which = summary.add_mutually_exclusive_group(required=True)
    which.add_argument("--meter", help="meter id (mtr_...)")
    which.add_argument("--event", help="event name (finds its meter)")
    summary.add_argument("--customer", required=True)
    summary.add_argument("--start", required=True, type=_parse_time, help="Unix seconds or ISO")
    summary.add_argument("--end", required=True, type=_parse_time, help="Unix seconds or ISO")
    summary.add_argument("--window", choices=("hour", "day"), help="group values per window")
    _connection_args(summary)

    demo = sub.add_parser(
        "demo", help="meter a small service end to end against an in-process emulator"
    )
    demo.add_argument("--calls", type=int, default=3000, help="metered calls (default 3000)")
    demo.add_argument("--customers", type=int, default=5, help="customers (default 5)")
    demo.add_argument("--workers", type=int, default=16, help="concurrent callers (default 16)")
    demo.add_argument("--quiet", action="store_true", help="no progress output")

    from ._spool_cli import add_spool_parser

    add_spool_parser(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "emulator":
        from .emulator.__main__ import main as emulator_main

        return emulator_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "send":
            return _send(args)
        if args.command == "summary":
            return _summary(args)
        if args.command == "spool":
            from ._spool_cli import UsageError, run_spool

            try:
                return run_spool(args)
            except UsageError as exc:
                where = " ".join(filter(None, ("spool", args.spool_command)))
                print(f"meterstream {where}: {exc}", file=sys.stderr)
                return 2
        if args.command == "demo":
            from ._demo import run_demo

            return run_demo(
                calls=args.calls,
                customers=args.customers,
                workers=args.workers,
                progress=not args.quiet,
            )
    except (CommandError, MeterError) as exc:
        print(f"meterstream {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover


def _send(args: argparse.Namespace) -> int:
    from ._client import MeterClient

    failures: list[BaseException] = []
    client = MeterClient(
        **_connection(args),
        exporter="stripe",
        raise_errors=True,
        max_retry_time=args.timeout,
        on_delivery_error=lambda events, error: failures.append(error),
    )
    try:
        client.record(
            args.event_name, args.value, customer=args.customer, identifier=args.identifier
        )
        delivered = client.flush(args.timeout)
    finally:
        client.shutdown(1.0)
    if failures:
        raise CommandError(str(failures[0]))
    if not delivered:
        raise CommandError(f"not delivered within {args.timeout:g}s (is Stripe reachable?)")
    print(f"sent {args.event_name} value={args.value} customer={args.customer}")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from ._config import Settings
    from ._stripe_api import StripeAPI

    settings = Settings.resolve({**_connection(args), "exporter": "none"})
    if not settings.api_key:
        raise CommandError("no API key: pass --api-key or set STRIPE_API_KEY")
    if args.end <= args.start:
        raise CommandError("--end must be after --start")
    with StripeAPI(settings.api_key, settings.api_base) as api:
        meter_id = args.meter
        if meter_id is None:
            meter = api.meter_for_event(args.event)
            if meter is None:
                raise CommandError(f"no active meter has event_name {args.event!r}")
            meter_id = meter["id"]
        rows = api.event_summaries(meter_id, args.customer, args.start, args.end, args.window)
    print(f"meter {meter_id}  customer {args.customer}")
    print(f"{'start (UTC)':<20}  {'end (UTC)':<20}  {'value':>14}")
    total = 0.0
    for row in rows:
        total += float(row["aggregated_value"])
        print(
            f"{_utc(row['start_time']):<20}  {_utc(row['end_time']):<20}  "
            f"{row['aggregated_value']:>14g}"
        )
    print(f"{'total':<42}  {total:>14g}")
    return 0


def _utc(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
