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
import json
import logging
import math
import os
import socket
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn, Optional, Union
from urllib.parse import urlsplit

from ._version import __version__
from .errors import ConfigurationError, DeliveryError, InvalidEventError, MeterError

__all__ = ["main"]

#: The flag that sets each event field, for errors found after parsing.
_FIELD_FLAGS = {
    "event_name": "EVENT",
    "customer": "--customer",
    "value": "--value",
    "identifier": "--identifier",
}


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


def _url(text: str) -> str:
    """An http(s) base URL; a bare ``host:port`` gets a suggestion."""
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.netloc:
        return text.rstrip("/")
    hint = ""
    if "://" not in text and text:
        hint = f"; did you mean http://{text}?"
    raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL{hint}")


def _seconds(text: str, *, zero: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not ((value >= 0 if zero else value > 0) and math.isfinite(value)):
        bound = ">= 0" if zero else "> 0"
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds {bound}")
    return value


def _seconds_or_zero(text: str) -> float:
    return _seconds(text, zero=True)


def _value(text: str) -> Union[int, Decimal]:
    """A usage value: digits stay an int, anything else a Decimal (never a float)."""
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not number.is_finite():
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    if text.strip().lstrip("+-").isdigit():
        return int(number)
    return number


def _at_least_1(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 1")
    return value


def _connection_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection (default: METERSTREAM_* / STRIPE_API_KEY)")
    group.add_argument("--api-key", help="Stripe secret key")
    group.add_argument("--api-base", type=_url, metavar="URL", help="base URL of the Stripe API")
    group.add_argument(
        "--stream-base", type=_url, metavar="URL", help="base URL of the meter event stream"
    )
    group.add_argument(
        "--base", type=_url, metavar="URL", help="one base URL for both (e.g. a local emulator)"
    )


def _connection(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The connection settings the flags give; a missing key is a usage error."""
    settings: dict[str, Any] = {}
    if args.api_key and args.api_key.strip():
        settings["api_key"] = args.api_key.strip()
    elif not any(
        (os.environ.get(name) or "").strip() for name in ("METERSTREAM_API_KEY", "STRIPE_API_KEY")
    ):
        parser.error("no Stripe secret key: pass --api-key sk_... or set STRIPE_API_KEY")
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    send.add_argument("--value", type=_value, default=1, help="usage value (default 1)")
    send.add_argument("--identifier", help="unique event identifier (default: generated)")
    send.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="give up after this long (default 30)",
    )
    _connection_args(send)
    send.set_defaults(parser=send)

    summary = sub.add_parser("summary", help="print a meter's event summaries for a customer")
    which = summary.add_mutually_exclusive_group(required=True)
    which.add_argument("--meter", help="meter id (mtr_...)")
    which.add_argument("--event", help="event name (finds its meter)")
    summary.add_argument("--customer", required=True)
    summary.add_argument("--start", required=True, type=_parse_time, help="Unix seconds or ISO")
    summary.add_argument("--end", required=True, type=_parse_time, help="Unix seconds or ISO")
    summary.add_argument("--window", choices=("hour", "day"), help="group values per window")
    _connection_args(summary)
    summary.set_defaults(parser=summary)

    demo = sub.add_parser(
        "demo", help="meter a small service end to end against an in-process emulator"
    )
    demo.add_argument(
        "--calls", type=_at_least_1, default=3000, help="metered calls (default 3000)"
    )
    demo.add_argument("--customers", type=_at_least_1, default=5, help="customers (default 5)")
    demo.add_argument(
        "--workers", type=_at_least_1, default=16, help="concurrent callers (default 16)"
    )
    demo.add_argument("--quiet", action="store_true", help="no progress output")
    demo.add_argument(
        "--spool", metavar="PATH", help="record through a durable spool at PATH (spool_path)"
    )

    from ._spool_cli import add_spool_parser

    add_spool_parser(sub)

    from ._relay_cli import add_relay_parser

    add_relay_parser(sub, _connection_args)

    recon = sub.add_parser(
        "reconcile",
        help="compare what the spool says Stripe accepted with Stripe's summaries",
        description="Compare, per customer, meter and window, what the spool says Stripe "
        "accepted with Stripe's meter event summaries. Exit 0: everything agrees; 1: "
        "something differs.",
    )
    recon.add_argument("--spool", required=True, metavar="PATH", help="the spool file")
    recon.add_argument("--since", required=True, type=_parse_time, help="Unix seconds or ISO")
    recon.add_argument("--until", required=True, type=_parse_time, help="Unix seconds or ISO")
    recon.add_argument("--window", choices=("hour", "day"), default="day", help="default day")
    recon.add_argument("--event", metavar="NAME", help="only this event name")
    recon.add_argument(
        "--grace",
        type=_seconds_or_zero,
        default=600.0,
        help="seconds Stripe may take to count an event (default 600)",
    )
    recon.add_argument("--json", action="store_true", help="every row as JSON, for a cron job")
    _connection_args(recon)
    recon.set_defaults(parser=recon)
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
    _log_to_stderr()
    try:
        if args.command == "send":
            return _send(args)
        if args.command == "summary":
            return _summary(args)
        if args.command == "reconcile":
            return _reconcile(args)
        if args.command == "spool":
            from ._spool_cli import UsageError, run_spool

            try:
                return run_spool(args)
            except UsageError as exc:
                where = " ".join(filter(None, ("spool", args.spool_command)))
                print(f"meterstream {where}: {exc}", file=sys.stderr)
                return 2
        if args.command == "relay":
            from ._relay_cli import run_relay

            return run_relay(args, _connection(args, args.parser))
        if args.command == "demo":
            from ._demo import run_demo

            return run_demo(
                calls=args.calls,
                customers=args.customers,
                workers=args.workers,
                progress=not args.quiet,
                spool=args.spool,
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
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover


def _log_to_stderr() -> None:
    """Show the library's warnings as ``meterstream: message``, unless logging is set up."""
    library = logging.getLogger("meterstream")
    if library.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    library.addHandler(handler)


def _send(args: argparse.Namespace) -> int:
    from ._client import MeterClient

    parser: argparse.ArgumentParser = args.parser
    connection = _connection(args, parser)
    failures: list[DeliveryError] = []
    # `send` reports its one outcome itself, once: the library's retry and
    # failure lines would say the same reason two more times.
    library = logging.getLogger("meterstream")
    level = library.level
    library.setLevel(logging.CRITICAL + 1)
    try:
        client = MeterClient(
            **connection,
            exporter="stripe",
            # An explicit request: settings that switch metering off for an
            # application do not silently swallow it.
            enabled=True,
            disabled_events=[],
            raise_errors=True,
            on_missing_customer="drop",
            max_retry_time=args.timeout,
            request_timeout=min(10.0, args.timeout),
            on_delivery_error=lambda events, error: failures.append(error),
        )
        deadline = time.monotonic() + args.timeout
        try:
            client.record(
                args.event_name, args.value, customer=args.customer, identifier=args.identifier
            )
        except InvalidEventError as exc:
            client.shutdown(0)
            flag = _FIELD_FLAGS.get(exc.field, exc.field)
            parser.error(f"argument {flag}: {exc.reason} (got {exc.value!r})")
        client.flush(max(0.0, deadline - time.monotonic()))
        stats = client.stats()
        settled = list(failures)
        client.shutdown(0)
    finally:
        library.setLevel(level)
    if stats["sent"] >= 1:
        print(f"sent {args.event_name} value={args.value} customer={args.customer}")
        return 0
    if stats["dropped_missing_customer"]:
        raise CommandError(f"not sent: no customer (--customer {args.customer!r})")
    if stats["dropped"]:
        raise CommandError("not sent: the event was dropped")
    client_settings = client.settings
    urls = [client_settings.api_base, client_settings.stream_base]
    if settled and settled[0].reason != "retries_exhausted":
        raise CommandError(f"not delivered: {settled[0]}")
    hint = _nobody_listening(urls)
    if hint:
        raise CommandError(f"not delivered within {args.timeout:g}s: {hint}")
    if settled:
        raise CommandError(f"not delivered within {args.timeout:g}s: {settled[0]}")
    if stats["retried"]:
        raise CommandError(
            f"not delivered within {args.timeout:g}s: still retrying after "
            f"{stats['retried']} failed attempt{'s' if stats['retried'] != 1 else ''}"
        )
    raise CommandError(
        f"not delivered within {args.timeout:g}s: no answer from {' or '.join(dict.fromkeys(urls))}"
    )


def _nobody_listening(urls: list[str]) -> Optional[str]:
    """A hint when nothing accepts connections at one of *urls*, else None."""
    for url in dict.fromkeys(urls):
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((host, port), timeout=1.0):
                pass
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            return f"is anything listening at {url}? ({reason.lower()})"
    return None


def _summary(args: argparse.Namespace) -> int:
    from ._config import Settings
    from ._exporters.stripe._api import StripeAPI

    parser: argparse.ArgumentParser = args.parser
    connection = _connection(args, parser)
    if args.end <= args.start:
        parser.error(f"argument --end: {args.end} is not after --start {args.start}")
    align, what = {"hour": (3600, "a whole hour"), "day": (86400, "a UTC midnight")}.get(
        args.window, (60, "a whole minute")
    )
    for flag, value in (("--start", args.start), ("--end", args.end)):
        if value % align:
            parser.error(
                f"argument {flag}: {value} ({_utc(value)} UTC) is not {what}, as Stripe "
                f"requires{' with --window ' + args.window if args.window else ''}; "
                f"try {value - value % align}"
            )
    settings = Settings.resolve({**connection, "exporter": "none"})
    assert settings.api_key
    try:
        with StripeAPI.from_settings(settings) as api:
            meter_id = args.meter
            if meter_id is None:
                meter = api.meter_for_event(args.event)
                if meter is None:
                    raise CommandError(f"no active meter has event_name {args.event!r}")
                meter_id = meter["id"]
            rows = api.event_summaries(meter_id, args.customer, args.start, args.end, args.window)
    except DeliveryError as exc:
        hint = _nobody_listening([settings.api_base]) if exc.reason == "unreachable" else None
        raise CommandError(hint or str(exc)) from None
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


def _reconcile(args: argparse.Namespace) -> int:
    from ._config import Settings
    from ._exporters.stripe._api import StripeAPI
    from ._reconcile import check_range, reconcile, render_table, to_json
    from ._spool import Spool

    parser: argparse.ArgumentParser = args.parser
    connection = _connection(args, parser)
    problem = check_range(args.since, args.until, args.window)
    if problem:
        parser.error(problem)
    try:
        spool = Spool(args.spool, repair=False, create=False)
    except ConfigurationError as exc:
        message = str(exc).split(": ", 1)[-1]
        parser.error(f"argument --spool: {message}")
    settings = Settings.resolve({**connection, "exporter": "none"})
    assert settings.api_key
    try:
        with StripeAPI.from_settings(settings) as api:
            result = reconcile(
                spool,
                api,
                args.since,
                args.until,
                window=args.window,
                event_name=args.event,
                grace=args.grace,
                now=time.time(),
            )
    except DeliveryError as exc:
        hint = _nobody_listening([settings.api_base]) if exc.reason == "unreachable" else None
        raise CommandError(hint or str(exc)) from None
    finally:
        spool.close()
    if args.json:
        print(json.dumps(to_json(result)))
    else:
        print(render_table(result, utc=_utc), end="")
    return 0 if result.agrees else 1


def _utc(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
