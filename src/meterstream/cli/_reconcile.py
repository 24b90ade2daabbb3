"""``meterstream reconcile`` with Metronome: the spool against Metronome
(``--destination metronome``), or Stripe against Metronome
(``--destinations stripe,metronome``)."""

from __future__ import annotations

import argparse
import json
import time
from contextlib import ExitStack
from typing import Any, Optional

from meterstream._config.settings import Settings
from meterstream._truth.reconcile import (
    Reconciliation,
    Summaries,
    check_range,
    reconcile,
    render_table,
    to_json,
)
from meterstream.errors import ConfigurationError, DeliveryError

__all__ = ["run_reconcile_metronome"]


def _utc(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))  # as --since takes it


def _destinations(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[str, str]:
    names = tuple(part.strip() for part in str(args.destinations).split(",") if part.strip())
    if sorted(names) != ["metronome", "stripe"]:
        parser.error(f"--destinations must be stripe,metronome, got {args.destinations!r}")
    return names[0], names[1]


def run_reconcile_metronome(args: argparse.Namespace) -> int:
    """Exit 0: everything agrees; 1: something differs (or a destination
    could not be read); usage errors exit 2 through *args.parser*."""
    from meterstream._exporters.metronome import MetronomeAPI
    from meterstream._exporters.stripe import StripeAPI
    from meterstream._spool.spool import Spool
    from meterstream._truth.destinations import (
        MetronomeSummaries,
        metronome_aliases,
        reconcile_destinations,
    )
    from meterstream.cli._args import connection_settings
    from meterstream.cli._stripe import CommandError

    parser: argparse.ArgumentParser = args.parser
    pair = _destinations(args, parser) if args.destinations else None
    if pair is None and not args.spool:
        parser.error(
            "--spool is required with --destination metronome (or set METERSTREAM_SPOOL_PATH)"
        )
    problem = check_range(args.since, args.until, args.window)
    if problem:
        parser.error(problem)
    options: dict[str, Any] = {"exporter": "none"}
    if pair is not None:
        options.update(connection_settings(args, parser))
    if args.metronome_base:
        options["metronome_base"] = args.metronome_base
    settings = Settings.resolve(options)
    if not settings.metronome_api_key:
        parser.error("no Metronome token: set METRONOME_BEARER_TOKEN")
    spool: Optional[Spool] = None
    if args.spool:
        try:
            spool = Spool(args.spool, repair=False, create=False)
        except ConfigurationError as exc:
            parser.error(f"argument --spool: {str(exc).split(': ', 1)[-1]}")
    result: Reconciliation
    try:
        with ExitStack() as stack:
            metronome = MetronomeSummaries(
                stack.enter_context(MetronomeAPI.from_settings(settings))
            )
            if pair is None:
                assert spool is not None
                result = reconcile(
                    spool,
                    metronome,
                    args.since,
                    args.until,
                    window=args.window,
                    event_name=args.event,
                    grace=args.grace,
                    now=time.time(),
                    destination="metronome",
                )
            else:
                stripe = stack.enter_context(StripeAPI.from_settings(settings))
                rows = None
                if spool is not None:
                    rows = spool.accepted_between(args.since, args.until, args.event)
                    customers = sorted({row[1] for row in rows})
                else:
                    customers = metronome_aliases(metronome)
                sides: dict[str, Summaries] = {"stripe": stripe, "metronome": metronome}
                result = reconcile_destinations(
                    sides[pair[0]],
                    sides[pair[1]],
                    customers,
                    args.since,
                    args.until,
                    labels=pair,
                    window=args.window,
                    event_name=args.event,
                    grace=args.grace,
                    now=time.time(),
                    accepted=rows,
                )
    except DeliveryError as exc:
        raise CommandError(str(exc)) from None
    finally:
        if spool is not None:
            spool.close()
    if args.json:
        print(json.dumps(to_json(result)))
    else:
        print(render_table(result, utc=_utc), end="")
    return 0 if result.agrees else 1
