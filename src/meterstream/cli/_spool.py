"""``meterstream spool status|replay|export|purge --spool PATH``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Optional, TextIO

from meterstream._spool.admin import SpoolStatus
from meterstream._spool.spool import Spool
from meterstream.cli._args import Parser, spool_arg
from meterstream.errors import ConfigurationError

__all__ = ["add_spool_parser", "run_spool"]


class UsageError(Exception):
    """A mistake in how the command was called: exit 2 with this hint."""


def add_spool_parser(sub: Any) -> None:
    """Add ``spool`` and its four commands to the CLI's subparsers."""
    spool = sub.add_parser(
        "spool",
        help="inspect and repair a durable spool (spool_path)",
        description="Inspect and repair the SQLite spool that spool_path points at.",
    )
    commands = spool.add_subparsers(dest="spool_command", metavar="COMMAND", parser_class=Parser)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help)
        spool_arg(parser)
        return parser

    status = command("status", "pending and dead-letter counts, oldest age, size on disk")
    status.add_argument("--json", action="store_true", help="one JSON object instead of tables")

    replay = command("replay", "send dead letters again (after fixing their cause)")
    replay.add_argument("--reason", help="only dead letters with this reason (or Stripe code)")
    replay.add_argument("--event", metavar="NAME", help="only this event name")

    export = command("export", "write events as JSON lines")
    which = export.add_mutually_exclusive_group()
    which.add_argument("--pending", action="store_true", help="pending events (the default)")
    which.add_argument("--dead", action="store_true", help="dead letters")
    which.add_argument(
        "--accepted",
        action="store_true",
        help="the accepted history: what Stripe took, kept spool_history_days for reconciliation",
    )

    purge = command("purge", "delete events for good")
    which = purge.add_mutually_exclusive_group(required=True)
    which.add_argument("--pending", action="store_true", help="pending events")
    which.add_argument("--dead", action="store_true", help="dead letters")
    purge.add_argument("--reason", help="only dead letters with this reason")
    purge.add_argument("--event", metavar="NAME", help="only this event name")
    purge.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")


def run_spool(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    """Run a ``spool`` command; UsageError for the caller to turn into exit 2."""
    out = sys.stdout if out is None else out
    if args.spool_command is None:
        raise UsageError("say which command: status, replay, export or purge")
    if args.spool_command == "purge":
        if args.reason and not args.dead:
            raise UsageError("--reason goes with --dead")
        if not args.yes:
            raise UsageError("add --yes to confirm; purged events are gone for good")
    try:
        spool = Spool(args.spool, repair=False, create=False)
    except ConfigurationError as exc:
        raise UsageError(f"--spool {args.spool}: {_after_setting(str(exc))}") from None
    try:
        if args.spool_command == "status":
            status = spool.admin.status()
            uses = spool.uses_count()
            if args.json:
                shown = {**_status_json(status, time.time()), "uses_to_fold": uses}
                out.write(json.dumps(shown) + "\n")
            else:
                out.write(_status_text(spool.path, status, time.time(), uses))
        elif args.spool_command == "replay":
            count = spool.admin.replay(reason=args.reason, event_name=args.event)
            out.write(f"replayed {_events(count)}: they will be sent by the next process\n")
            out.write("that delivers from this spool.\n")
        elif args.spool_command == "export":
            if args.accepted:
                events = spool.admin.export_accepted()
            else:
                events = spool.admin.export("dead" if args.dead else "pending")
            for event in events:
                out.write(json.dumps(event, default=str) + "\n")
        else:
            table = "dead" if args.dead else "pending"
            count = spool.admin.purge(table, reason=args.reason, event_name=args.event)
            out.write(f"purged {_events(count)} from {'dead letters' if args.dead else table}\n")
    finally:
        spool.close()
    return 0


def _after_setting(message: str) -> str:
    return message.split(": ", 1)[1] if message.startswith("spool_path: ") else message


def _events(n: int) -> str:
    return f"{n:,} event" + ("" if n == 1 else "s")


def _age(oldest: Optional[float], now: float) -> str:
    if oldest is None:
        return "-"
    seconds = max(0.0, now - oldest)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _status_text(path: str, status: SpoolStatus, now: float, uses: int = 0) -> str:
    lines = [
        f"spool {path}",
        f"  size on disk   {_size(status.bytes)}",
        f"  pending        {status.pending:,} ({status.claimed:,} being sent), "
        f"oldest {_age(status.oldest_pending, now)}",
    ]
    if uses:
        lines.append(f"  uses waiting   {uses:,} (aggregate: to be aggregated into pending events)")
    lines += [
        f"  dead letters   {status.dead:,}, oldest {_age(status.oldest_dead, now)}",
        f"  accepted       {status.accepted:,} kept for reconciliation",
    ]
    if status.pending_by_event:
        lines += ["", _table(["pending: event", "events"], sorted(status.pending_by_event.items()))]
    if status.dead_by_reason:
        rows = [(name, reason, n) for (name, reason), n in sorted(status.dead_by_reason.items())]
        lines += ["", _table(["dead: event", "reason", "events"], rows)]
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[tuple[Any, ...]]) -> str:
    cells = [header] + [[f"{v:,}" if isinstance(v, int) else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        # Text to the left, counts to the right.
        return "  ".join(
            cell.rjust(width) if i == len(row) - 1 else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ).rstrip()

    return "\n".join(
        [line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]]
    )


def _status_json(status: SpoolStatus, now: float) -> dict[str, Any]:
    return {
        "pending": status.pending,
        "claimed": status.claimed,
        "dead": status.dead,
        "accepted": status.accepted,
        "pending_by_event": status.pending_by_event,
        "dead_by_reason": [
            {"event_name": name, "reason": reason, "count": n}
            for (name, reason), n in sorted(status.dead_by_reason.items())
        ],
        "oldest_pending_age_seconds": None
        if status.oldest_pending is None
        else round(now - status.oldest_pending, 3),
        "oldest_dead_age_seconds": None
        if status.oldest_dead is None
        else round(now - status.oldest_dead, 3),
        "bytes": status.bytes,
    }
