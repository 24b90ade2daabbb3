"""What the flags of the ``meterstream`` commands accept, checked before they become settings.

Each type names the value as the user typed it, so that a usage error says
``--base`` or ``--timeout``, not the setting behind it. The emulator's own
command (``meterstream emulator``) has its copy of :class:`Parser` and
:func:`whole_number`: the emulator imports nothing of the SDK. (``_relay``
still has its own ``_positive`` and ``_seconds``; they belong here once that
module settles.)
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn, Optional, Union
from urllib.parse import urlsplit

__all__ = [
    "SPOOL_ENV",
    "TIME_HINT",
    "Parser",
    "at_least_1",
    "connection_settings",
    "connection_args",
    "parse_time",
    "seconds",
    "spool_arg",
    "seconds_or_zero",
    "url",
    "usage_value",
    "whole_number",
]


#: Where the spool commands find the spool when ``--spool`` is not given
#: (the variable of the ``spool_path`` setting).
SPOOL_ENV = "METERSTREAM_SPOOL_PATH"
#: A time as the time flags take it, for their help and errors.
TIME_HINT = "ISO 8601 (2025-06-15T15:00:00Z, UTC when no offset) or Unix seconds"

_REQUIRED = "the following arguments are required"


class Parser(argparse.ArgumentParser):
    """A parser whose usage errors are one line and a hint, never a traceback.

    A flag it does not know is named, with the closest one it knows
    (``--spol``: did you mean ``--spool``?), before any complaint about a
    required flag: that one is usually the same flag, misspelt.
    """

    _given: Sequence[str] = ()

    def parse_known_args(  # type: ignore[override]
        self, args: Optional[Sequence[str]] = None, namespace: Optional[argparse.Namespace] = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._given = list(sys.argv[1:] if args is None else args)
        parsed, extras = super().parse_known_args(self._given, namespace)
        unknown = self._unknown_flags(extras)
        if unknown:
            self.error(self._unknown_message(unknown[0]))
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        if message.startswith(_REQUIRED):
            unknown = self._unknown_flags(self._given)
            if unknown:
                message = self._unknown_message(unknown[0])
            elif "--spool" in message:
                message += f" (or set {SPOOL_ENV})"
        self.exit(2, f"{self.prog}: error: {_suggest(message)} (see --help)\n")

    def _unknown_flags(self, given: Sequence[str]) -> list[str]:
        known = list(self._option_string_actions)
        unknown = []
        for text in given:
            if text == "--":
                break
            if not text.startswith("-") or text == "-" or _NUMBER.match(text):
                continue
            name = text.split("=", 1)[0]
            if name in known or (
                self.allow_abbrev
                and name.startswith("--")
                and any(k.startswith(name) for k in known)
            ):
                continue
            unknown.append(name)
        return unknown

    def _unknown_message(self, flag: str) -> str:
        flags = [k for k in self._option_string_actions if k.startswith("--")]
        close = difflib.get_close_matches(flag, flags, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"unrecognized argument {flag}{hint}"


_NUMBER = re.compile(r"^-\d+(\.\d*)?$|^-\.\d+$")
_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<given>[^']*)' \(choose from (?P<known>.*)\)")


def _suggest(message: str) -> str:
    """*message*, with "did you mean 'send'?" when it is argparse's invalid choice."""
    match = _INVALID_CHOICE.search(message)
    if match is None:
        return message
    known = [name.strip(" '") for name in match["known"].split(",")]
    close = difflib.get_close_matches(match["given"], known, n=1)
    return f"{message}; did you mean {close[0]!r}?" if close else message


def spool_arg(
    parser: argparse.ArgumentParser, *, required: bool = True, help: str = "the spool file"
) -> None:
    """``--spool PATH``, else the ``METERSTREAM_SPOOL_PATH`` the application uses."""
    from_env = (os.environ.get(SPOOL_ENV) or "").strip() or None
    parser.add_argument(
        "--spool",
        metavar="PATH",
        default=from_env,
        required=required and from_env is None,
        help=f"{help} (default: ${SPOOL_ENV})",
    )


def parse_time(text: str) -> int:
    """Unix seconds from digits or an ISO 8601 date-time (UTC when no offset)."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: give {TIME_HINT}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp())


def url(text: str) -> str:
    """An http(s) base URL; a bare ``host:port`` gets a suggestion."""
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.netloc:
        return text.rstrip("/")
    hint = ""
    if "://" not in text and text:
        hint = f"; did you mean http://{text}?"
    raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL{hint}")


def seconds(text: str, *, zero: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not ((value >= 0 if zero else value > 0) and math.isfinite(value)):
        bound = ">= 0" if zero else "> 0"
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds {bound}")
    return value


def seconds_or_zero(text: str) -> float:
    return seconds(text, zero=True)


def usage_value(text: str) -> Union[int, Decimal]:
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


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def at_least_1(text: str) -> int:
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 1")
    return value


def connection_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection (default: METERSTREAM_* / STRIPE_API_KEY)")
    group.add_argument("--api-key", help="Stripe secret key")
    group.add_argument("--api-base", type=url, metavar="URL", help="base URL of the Stripe API")
    group.add_argument(
        "--stream-base", type=url, metavar="URL", help="base URL of the meter event stream"
    )
    group.add_argument(
        "--base", type=url, metavar="URL", help="one base URL for both (e.g. a local emulator)"
    )


def connection_settings(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> dict[str, Any]:
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
