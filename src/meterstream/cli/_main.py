"""The ``meterstream`` command: emulator, send, summary, demo.

Usage errors exit 2 with a one-line hint naming the flag (or the environment
variable) as the user typed it; failures exit 1 with the reason on stderr, said
once; no user mistake prints a traceback.

The library's settings have their own names (``api_base``,
``max_retry_time``): this module checks every flag before it becomes a
setting, so that an error names ``--base`` or ``--timeout``, not the setting
behind it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional

from meterstream._version import __version__
from meterstream.cli._args import (
    TIME_HINT,
    Parser,
    at_least_1,
    connection_args,
    connection_settings,
    parse_time,
    seconds,
    seconds_or_zero,
    spool_arg,
    url,
    usage_value,
)
from meterstream.cli._stripe import CommandError, run_reconcile, run_send, run_summary
from meterstream.errors import ConfigurationError, MeterError

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="meterstream",
        description="Usage metering for Stripe Meter Event Streams.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    sub.add_parser(
        "emulator",
        help="run the local Stripe emulator",
        add_help=False,
        description="Run the local Stripe emulator (see `meterstream emulator --help`).",
    )

    send = sub.add_parser("send", help="send one meter event and wait for delivery")
    send.add_argument("event_name", metavar="EVENT")
    send.add_argument("--customer", required=True, help="Stripe customer id (cus_...)")
    send.add_argument("--value", type=usage_value, default=1, help="usage value (default 1)")
    send.add_argument("--identifier", help="unique event identifier (default: generated)")
    send.add_argument(
        "--timeout",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="give up after this long (default 30)",
    )
    connection_args(send)
    send.set_defaults(parser=send)

    summary = sub.add_parser("summary", help="print a meter's event summaries for a customer")
    which = summary.add_mutually_exclusive_group(required=True)
    which.add_argument("--meter", help="meter id (mtr_...)")
    which.add_argument("--event", help="event name (finds its meter)")
    summary.add_argument("--customer", required=True)
    summary.add_argument("--start", required=True, type=parse_time, metavar="TIME", help=TIME_HINT)
    summary.add_argument("--end", required=True, type=parse_time, metavar="TIME", help=TIME_HINT)
    summary.add_argument("--window", choices=("hour", "day"), help="group values per window")
    connection_args(summary)
    summary.set_defaults(parser=summary)

    demo = sub.add_parser(
        "demo", help="meter a small service end to end against an in-process emulator"
    )
    demo.add_argument("--calls", type=at_least_1, default=3000, help="metered calls (default 3000)")
    demo.add_argument("--customers", type=at_least_1, default=5, help="customers (default 5)")
    demo.add_argument(
        "--workers", type=at_least_1, default=16, help="concurrent callers (default 16)"
    )
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    demo.add_argument(
        "--spool", metavar="PATH", help="record through a durable spool at PATH (spool_path)"
    )
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep the emulator and its page up after the demo, until Ctrl-C",
    )

    from meterstream.cli._spool import add_spool_parser

    add_spool_parser(sub)

    from meterstream.cli._usage import add_usage_parser

    add_usage_parser(sub)

    from meterstream.cli._cancel import add_cancel_parser

    add_cancel_parser(sub)

    from meterstream.cli._relay import add_relay_parser

    add_relay_parser(sub, connection_args)

    recon = sub.add_parser(
        "reconcile",
        help="compare the spool's accepted history with a destination, or two destinations",
        description="Compare, per customer, meter and window, what the spool says a "
        "destination accepted with that destination's usage (Stripe's meter event summaries, "
        "Metronome's /v1/usage), or, with --destinations stripe,metronome, the two "
        "destinations with each other. Exit 0: everything agrees; 1: something differs; "
        "2: a usage error.",
    )
    spool_arg(recon, required=False)
    recon.add_argument(
        "--destination",
        choices=("stripe", "metronome"),
        default="stripe",
        help="what the spool is compared with (default stripe)",
    )
    recon.add_argument(
        "--destinations",
        metavar="A,B",
        help="compare two destinations (stripe,metronome) with each other; the customers "
        "are the spool's (with --spool), else every ingest alias of Metronome's customers",
    )
    recon.add_argument(
        "--metronome-base",
        type=url,
        metavar="URL",
        help="base URL of Metronome's API (token: METRONOME_BEARER_TOKEN)",
    )
    recon.add_argument("--since", required=True, type=parse_time, metavar="TIME", help=TIME_HINT)
    recon.add_argument("--until", required=True, type=parse_time, metavar="TIME", help=TIME_HINT)
    recon.add_argument("--window", choices=("hour", "day"), default="day", help="default day")
    recon.add_argument("--event", metavar="NAME", help="only this event name")
    recon.add_argument(
        "--grace",
        type=seconds_or_zero,
        default=600.0,
        help="seconds Stripe may take to count an event (default 600)",
    )
    recon.add_argument("--json", action="store_true", help="every row as JSON, for a cron job")
    connection_args(recon)
    recon.set_defaults(parser=recon)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "emulator":
        from meterstream.emulator.__main__ import main as emulator_main

        return emulator_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _log_to_stderr()
    try:
        if args.command == "send":
            return run_send(args)
        if args.command == "summary":
            return run_summary(args)
        if args.command == "reconcile":
            if args.destinations or args.destination != "stripe":
                from meterstream.cli._reconcile import run_reconcile_metronome

                return run_reconcile_metronome(args)
            return run_reconcile(args)
        if args.command == "spool":
            from meterstream.cli._spool import UsageError, run_spool

            try:
                return run_spool(args)
            except UsageError as exc:
                where = " ".join(filter(None, ("spool", args.spool_command)))
                print(f"meterstream {where}: {exc}", file=sys.stderr)
                return 2
        if args.command == "usage":
            from meterstream.cli._usage import run_usage

            return run_usage(args)
        if args.command == "cancel":
            from meterstream.cli._cancel import run_cancel

            return run_cancel(args)
        if args.command == "relay":
            from meterstream.cli._relay import nats_missing, run_relay

            if nats_missing():  # before the flags: the extra is what is missing
                return 1
            stripe = args.destination == "stripe"
            return run_relay(args, connection_settings(args, args.parser) if stripe else {})
        if args.command == "demo":
            from meterstream.cli._demo import run_demo

            return run_demo(
                calls=args.calls,
                customers=args.customers,
                workers=args.workers,
                progress=not args.quiet,
                spool=args.spool,
                keep=args.keep,
            )
    except ConfigurationError as exc:
        # What the flags give is checked above; this is the environment
        # (METERSTREAM_*), and the message names the variable as set.
        getattr(args, "parser", parser).error(str(exc))
    except (CommandError, MeterError) as exc:
        print(f"meterstream {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`meterstream demo | head -1`): nothing more
        # to say, and nothing to say it to. Python's own recipe: stdout to
        # devnull, so that the flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover


def _log_to_stderr() -> None:
    """Show the library's warnings as ``meterstream: message``, unless logging is set up."""
    library = logging.getLogger("meterstream")
    if library.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    library.addHandler(handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
