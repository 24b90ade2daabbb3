"""The commands that talk to Stripe: ``send``, ``summary`` and ``reconcile``.

Failures raise :class:`CommandError`, which ``meterstream`` reports on
stderr with exit status 1; usage mistakes go to the command's parser (exit 2).
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import time
from typing import Optional
from urllib.parse import urlsplit

from meterstream.cli._args import connection_settings
from meterstream.errors import ConfigurationError, DeliveryError, InvalidEventError

__all__ = ["CommandError", "run_reconcile", "run_send", "run_summary"]

#: The flag that sets each event field, for errors found after parsing.
_FIELD_FLAGS = {
    "event_name": "EVENT",
    "customer": "--customer",
    "value": "--value",
    "identifier": "--identifier",
}


class CommandError(Exception):
    """A failure to report on stderr with exit status 1."""


def run_send(args: argparse.Namespace) -> int:
    from meterstream._client.client import MeterClient

    parser: argparse.ArgumentParser = args.parser
    connection = connection_settings(args, parser)
    # on_delivery_error is typed to give any exception (the typed settings
    # say so): a DeliveryError in practice, its reason read when it is one.
    failures: list[BaseException] = []
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
    if settled and getattr(settled[0], "reason", None) != "retries_exhausted":
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


def run_summary(args: argparse.Namespace) -> int:
    from meterstream._config.settings import Settings
    from meterstream._exporters.stripe import StripeAPI

    parser: argparse.ArgumentParser = args.parser
    connection = connection_settings(args, parser)
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


def run_reconcile(args: argparse.Namespace) -> int:
    from meterstream._config.settings import Settings
    from meterstream._exporters.stripe import StripeAPI
    from meterstream._spool.spool import Spool
    from meterstream._truth.reconcile import check_range, reconcile, render_table, to_json

    parser: argparse.ArgumentParser = args.parser
    if not args.spool:
        parser.error(
            "--spool is required (or set METERSTREAM_SPOOL_PATH, or compare "
            "--destinations stripe,metronome)"
        )
    connection = connection_settings(args, parser)
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
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))  # as --since takes it
