"""``meterstream cancel --spool PATH``: take back accepted events, one or a range.

The events come from the spool's history of what Stripe accepted: one by
``--identifier``, or every event of ``--customer`` and ``--event`` with a
timestamp in ``[--since, --until)``. The command prints what it would cancel;
with ``--yes`` it records the cancellations in the spool (durable: a process
that dies before sending them leaves them to the next one) and sends them
through a client on that spool, waiting until they are settled.

A parallel run (``--destinations stripe,metronome``) has one spool per
destination, derived from ``--spool`` as the client derives them
(``meter.db``, ``meter.metronome.db``): the command looks the events up in
each, and does at each what ``cancel()`` does there. An event still waiting in
a destination's spool is withdrawn (no request, Metronome's too), also when
another live process (the application) holds it in its journal: that process
is asked, and answers within a couple of seconds (``_spool/withdrawals.py``);
one Stripe
accepted is cancelled at Stripe; one Metronome accepted cannot be cancelled
there and is listed with what to do instead. Nothing is ever sent to
Metronome, so no Metronome token is needed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Callable

from meterstream.cli._args import (
    TIME_HINT,
    connection_args,
    connection_settings,
    parse_time,
    seconds,
    spool_arg,
)
from meterstream.errors import CancelError, ConfigurationError

if TYPE_CHECKING:
    from meterstream._spool.cancellations import AcceptedEvent
    from meterstream._spool.spool import Spool

__all__ = ["add_cancel_parser", "run_cancel"]

#: Stripe cancels an event only within this long of receiving it.
CANCEL_WINDOW = 86400.0
DESTINATIONS = ("stripe", "metronome")
#: What Metronome offers instead of a cancellation.
METRONOME_INSTEAD = (
    "record a negating use at Metronome while its invoice is a draft (a negative value, "
    "a new identifier, a SUM metric), else grant a credit"
)


def add_cancel_parser(sub: Any) -> None:
    """Add ``cancel`` to the CLI's subparsers."""
    cancel = sub.add_parser(
        "cancel",
        help="cancel accepted events at Stripe (one, or a customer's range)",
        description="Cancel events Stripe accepted, found in the spool's history: one "
        "(--identifier) or every event of a customer and meter in [--since, --until). "
        "Prints what it would cancel; --yes does it. Stripe cancels only events it "
        "received within the last 24 hours. With --destinations stripe,metronome (a "
        "parallel run), each destination's own spool is read and the cancellation goes "
        "to each: withdrawn where the event still waits, cancelled at Stripe, listed "
        "where Metronome accepted it (Metronome cannot cancel).",
    )
    spool_arg(cancel)
    cancel.add_argument("--event", required=True, metavar="NAME", help="the event name")
    cancel.add_argument("--identifier", help="one event, by identifier")
    cancel.add_argument("--customer", help="every event of this customer (with --since/--until)")
    cancel.add_argument("--since", type=parse_time, metavar="TIME", help=TIME_HINT)
    cancel.add_argument("--until", type=parse_time, metavar="TIME", help=f"{TIME_HINT}, excluded")
    cancel.add_argument(
        "--destinations",
        metavar="A,B",
        help="a parallel run's destinations, in the client's order (stripe,metronome): "
        "--spool is the first one's spool, the others' are derived from it "
        "(meter.db -> meter.metronome.db)",
    )
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


def _destinations(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[str, ...]:
    if args.destinations is None:
        return ("stripe",)
    names = tuple(part.strip() for part in str(args.destinations).split(",") if part.strip())
    if not names or len(set(names)) != len(names) or not set(names) <= set(DESTINATIONS):
        parser.error(f"argument --destinations: stripe,metronome, got {args.destinations!r}")
    return names


def _check_selection(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
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


def run_cancel(
    args: argparse.Namespace,
    print_: Callable[[str], None] = print,
    now: Callable[[], float] = time.time,
) -> int:
    """Run ``cancel``: 0 when everything asked for was cancelled (or would be), else 1."""
    from meterstream._client.parallel import lane_spool_path
    from meterstream._spool.spool import Spool

    parser: argparse.ArgumentParser = args.parser
    _check_selection(args, parser)
    destinations = _destinations(args, parser)
    paths = {name: lane_spool_path(args.spool, destinations, name) for name in destinations}
    if destinations == ("stripe",):
        sibling = lane_spool_path(args.spool, DESTINATIONS, "metronome")
        if os.path.exists(sibling):
            print(
                f"note: {sibling} exists: if this is a parallel run, pass "
                "--destinations stripe,metronome to cancel at Metronome's spool too",
                file=sys.stderr,
            )
    connection: dict[str, Any] = {}
    if not args.dry_run and "stripe" in destinations:
        connection = connection_settings(args, parser)
    spools: dict[str, Spool] = {}
    try:
        for name, path in paths.items():
            try:
                spools[name] = Spool(path, repair=False, create=False)
            except ConfigurationError as exc:
                what = "--spool" if path == args.spool else f"--spool ({name}: {path})"
                parser.error(f"argument {what}: {str(exc).split(': ', 1)[-1]}")
        plan = _plan(args, spools)
        at = now()
        if not plan.rows and not any(plan.pending.values()):
            held = "accepted or waiting " if len(destinations) > 1 else "accepted "
            if args.identifier is not None:
                print_(f"no {held}{args.event!r} event {args.identifier!r} in the spool's history")
                return 1
        actions = plan.actions(at)
        for line in plan.lines(actions):
            print_(line)
        refused = plan.summary(actions, print_)
        todo = {name: ids for name, ids in _todo(actions).items() if ids}
        if args.dry_run or not todo:
            return 1 if refused else 0
        if not args.yes:
            print_("nothing cancelled: run again with --yes to cancel them")
            return 1
        failed = False
        for name, identifiers in todo.items():
            if name == "stripe":
                spools.pop(name).close()  # the client opens its own
                failed = _cancel(
                    args, connection, paths[name], identifiers, print_, len(destinations) > 1
                )
            else:
                _withdraw(spools[name], name, args.event, identifiers, print_)
        return 1 if failed or refused else 0
    finally:
        for spool in spools.values():
            spool.close()


class _Plan:
    """The events asked for, and where each destination holds them."""

    def __init__(self, destinations: tuple[str, ...]) -> None:
        self.destinations = destinations
        #: identifier -> the event (from whichever history holds it), oldest first.
        self.rows: dict[str, AcceptedEvent] = {}
        #: destination -> identifier -> its accepted event there.
        self.accepted: dict[str, dict[str, AcceptedEvent]] = {d: {} for d in destinations}
        #: destination -> identifier -> "pending" / "in_flight" (still in its spool).
        self.pending: dict[str, dict[str, str]] = {d: {} for d in destinations}

    def actions(self, at: float) -> dict[str, dict[str, str]]:
        """identifier -> destination -> what happens there."""
        out: dict[str, dict[str, str]] = {}
        for ident in list(self.rows) or list(self._pending_ids()):
            out[ident] = {}
            for name in self.destinations:
                accepted = self.accepted[name].get(ident)
                waiting = self.pending[name].get(ident)
                if accepted is not None and name == "stripe":
                    old = at - accepted.accepted_at >= CANCEL_WINDOW
                    action = "too old (accepted over 24 h ago)" if old else "to cancel"
                elif accepted is not None or waiting == "in_flight":
                    action = "cannot cancel" if name != "stripe" else "to cancel"
                elif waiting == "pending":
                    action = "to withdraw"
                else:
                    action = "not held"
                out[ident][name] = action
        return out

    def _pending_ids(self) -> list[str]:
        return list(dict.fromkeys(i for found in self.pending.values() for i in found))

    def lines(self, actions: dict[str, dict[str, str]]) -> list[str]:
        lines = []
        for ident, where in actions.items():
            row = self.rows.get(ident)
            head = (
                f"{ident}  {row.customer}  value={row.value}  at {_utc(row.timestamp)}"
                if row is not None
                else f"{ident}  (not sent yet)"
            )
            if self.destinations == ("stripe",):
                assert row is not None
                lines.append(f"{head}  accepted {_utc(row.accepted_at)}  {where['stripe']}")
            else:
                lines.append(
                    head + "".join(f"  {name}: {action}" for name, action in where.items())
                )
        return lines

    def summary(self, actions: dict[str, dict[str, str]], print_: Callable[[str], None]) -> bool:
        """Print the totals; True when something asked for cannot be cancelled."""
        refused = False
        for name in self.destinations:
            done = [w[name] for w in actions.values()]
            fresh = sum(1 for action in done if action in ("to cancel", "to withdraw"))
            old = sum(1 for action in done if action.startswith("too old"))
            cannot = sum(1 for action in done if action == "cannot cancel")
            refused = refused or bool(old or cannot)
            verb = "to cancel" if name == "stripe" else "to withdraw"  # it cannot cancel
            text = f"{fresh} event{'' if fresh == 1 else 's'} {verb}"
            if old:
                text += f", {old} too old for Stripe to cancel"
            if cannot:
                text += f", {cannot} accepted there, which Metronome cannot cancel: "
                text += METRONOME_INSTEAD
            print_(text if self.destinations == ("stripe",) else f"{name}: {text}")
        return refused


def _plan(args: argparse.Namespace, spools: dict[str, Spool]) -> _Plan:
    plan = _Plan(tuple(spools))
    for name, spool in spools.items():
        store = spool.cancellations
        if args.identifier is not None:
            found = store.accepted_event(args.identifier)
            rows = [] if found is None or found.event_name != args.event else [found]
        else:
            rows = store.accepted_for(args.customer, args.event, args.since, args.until)
        for row in rows:
            plan.accepted[name][row.identifier] = row
            plan.rows.setdefault(row.identifier, row)
    plan.rows = dict(sorted(plan.rows.items(), key=lambda item: item[1].timestamp))
    asked = [args.identifier] if args.identifier is not None else list(plan.rows)
    if len(spools) > 1:  # a parallel run: still waiting at some destination?
        for name, spool in spools.items():
            for ident in asked:
                if ident not in plan.accepted[name]:
                    state = spool.cancellations.pending_state(ident)
                    if state is not None:
                        plan.pending[name][ident] = state
    return plan


def _todo(actions: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    todo: dict[str, list[str]] = {}
    for ident, where in actions.items():
        for name, action in where.items():
            if action in ("to cancel", "to withdraw"):
                todo.setdefault(name, []).append(ident)
    return todo


def _withdraw(
    spool: Spool, name: str, event: str, identifiers: list[str], print_: Callable[[str], None]
) -> None:
    """At a destination that cannot cancel: delete what still waits in its spool."""
    withdrawn = 0
    for ident in identifiers:
        outcome = spool.cancellations.withdraw(ident, standing=True)
        if outcome == "withdrawn":
            spool.cancellations.add_cancellation(ident, event, "withdrawn")
            withdrawn += 1
        elif outcome == "in_flight":
            # On its way, or its process did not answer in time: the request
            # stands, and that process withdraws it if it comes back to wait.
            print_(
                f"{name}: {ident} is on its way (or the process holding it did not answer "
                "in time): not withdrawn; if Metronome receives it, it cannot cancel it: "
                + METRONOME_INSTEAD
            )
        else:
            print_(
                f"{name}: {ident} was sent meanwhile; Metronome cannot cancel: {METRONOME_INSTEAD}"
            )
    print_(f"{name}: withdrawn {withdrawn} before sending")


def _cancel(
    args: argparse.Namespace,
    connection: dict[str, Any],
    path: str,
    identifiers: list[str],
    print_: Callable[[str], None],
    parallel: bool,
) -> bool:
    """Cancel at Stripe through a client on its spool; True when something failed."""
    from meterstream._client.client import MeterClient

    failures: list[str] = []
    client = MeterClient(
        **connection,
        exporter="stripe",
        spool_path=path,
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
    prefix = "stripe: " if parallel else ""
    print_(
        f"{prefix}cancelled {stats['cancels_sent']} at Stripe, "
        f"{stats['cancels_withdrawn']} before sending"
    )
    if not settled:
        print_(f"{stats['cancels_pending']} still waiting to be sent: they stay in the spool")
    return not settled or bool(failures) or bool(refused)


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
