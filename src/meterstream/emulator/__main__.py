"""``python -m meterstream.emulator`` / ``meterstream emulator``: run the emulator."""

from __future__ import annotations

import argparse
import errno
import gc
import math
import signal
import sys
import threading
from typing import NoReturn, Optional

from meterstream.emulator._webhooks import add_arguments as webhook_arguments
from meterstream.emulator._webhooks import configure_from_args as configure_webhooks

__all__ = ["main"]


# The emulator imports nothing of the SDK, so that it stands in for Stripe
# whatever state the SDK is in: these two are the meterstream command's
# (meterstream.cli._args), written again.
class _Parser(argparse.ArgumentParser):
    """A parser whose usage errors are one line and a hint, never a traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value >= 0.0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number >= 0")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _redirect(text: str) -> int:
    value = _count(text)
    if value and not 300 <= value <= 399:
        raise argparse.ArgumentTypeError("must be 0 or a 3xx status")
    return value


def _count(text: str) -> int:
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


#: The smallest body limit accepted: one stream request with one event is
#: about 100 bytes, a full batch of 100 events about 20 KB. Below this the
#: emulator would answer 413 to nearly everything.
MIN_BODY_BYTES = 1024


def _body_limit(text: str) -> int:
    value = _count(text)
    if value < MIN_BODY_BYTES:
        raise argparse.ArgumentTypeError(
            f"{text} bytes would refuse nearly every stream request; use at least "
            f"{MIN_BODY_BYTES} (a batch of 100 events is about 20000)"
        )
    return value


def _api_key(text: str) -> str:
    if not text or text != text.strip() or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(
            f"{text!r} cannot be sent as a bearer token, so every request would be refused"
        )
    return text


def _port(text: str) -> int:
    value = _count(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (0..65535)")
    return value


def build_parser(prog: str = "meterstream emulator") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="A local stand-in for Stripe's meter event stream, sessions, meters "
        "and event summaries. Prints its base URL, then serves until SIGINT/SIGTERM.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    add("--port", type=_port, default=12111, help="TCP port, 0 for any free one (default 12111)")
    add(
        "--session-ttl",
        type=_positive,
        default=900.0,
        metavar="SECONDS",
        help="lifetime of session tokens (default 900)",
    )
    add(
        "--api-key",
        action="append",
        type=_api_key,
        dest="api_keys",
        metavar="KEY",
        help="accept only this secret key (repeatable; default: any sk_test_/rk_test_ key)",
    )
    add(
        "--auto-create-meters",
        action="store_true",
        help="events for unknown event names create a sum meter",
    )
    add(
        "--async-timestamp-errors",
        action="store_true",
        help="report out-of-window timestamps as asynchronous errors instead of 400s",
    )
    add(
        "--max-body-bytes",
        type=_body_limit,
        default=1 << 20,
        metavar="N",
        help="larger request bodies get 413 (default 1048576)",
    )
    add(
        "--idle-timeout",
        type=_positive,
        default=30.0,
        metavar="SECONDS",
        help="close a connection that has not sent a whole request in this long (default 30)",
    )
    faults = parser.add_argument_group("faults (stream requests; see --fault-sessions)")
    fadd = faults.add_argument
    fadd(
        "--fail-500",
        type=_fraction,
        default=0.0,
        metavar="FRACTION",
        help="answer this fraction of requests 500 api_error",
    )
    fadd(
        "--fail-429",
        type=_fraction,
        default=0.0,
        metavar="FRACTION",
        help="answer this fraction of requests 429 rate_limit",
    )
    fadd(
        "--latency-ms",
        type=_non_negative,
        default=0.0,
        metavar="MS",
        help="delay every answer by this much",
    )
    fadd(
        "--rps-limit",
        type=_non_negative,
        default=0.0,
        metavar="N",
        help="answer 429 past N requests per second (0: no limit)",
    )
    fadd(
        "--expire-next",
        type=_count,
        default=0,
        metavar="N",
        help="answer the next N stream requests 401 temporary_session_expired",
    )
    fadd(
        "--hang",
        action="store_true",
        help="never answer until un-hung through POST /_emulator/faults",
    )
    fadd(
        "--should-retry",
        choices=("true", "false"),
        help="send Stripe-Should-Retry with this value on injected errors",
    )
    fadd(
        "--retry-after",
        type=_non_negative,
        metavar="SECONDS",
        help="send Retry-After on injected 429 and 500 answers",
    )
    fadd("--fault-sessions", action="store_true", help="apply the faults to session creation too")
    fadd(
        "--reject-identifier",
        metavar="ID",
        help="answer 400 (param events[i]) to requests holding the event with this identifier",
    )
    fadd(
        "--redirect-status",
        type=_redirect,
        default=0,
        metavar="3XX",
        help="answer requests with this 3xx status and a Location (0: off)",
    )
    fadd("--redirect-location", metavar="URL", help="the Location of --redirect-status answers")
    fadd(
        "--session-trickle-ms",
        type=_non_negative,
        default=0.0,
        metavar="MS",
        help="send session answers a byte at a time, this far apart",
    )
    fadd(
        "--session-pad-bytes",
        type=_count,
        default=0,
        metavar="N",
        help="make session answers N bytes larger (an oversized answer)",
    )
    fadd(
        "--reject-without-param",
        action="store_true",
        help="the 400 of --reject-identifier names no event (no param)",
    )
    fadd("--seed", type=int, help="seed for the random choice of failing requests")
    webhook_arguments(parser)
    add(
        "--log-level",
        default="warning",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn's log level",
    )
    add(
        "--open",
        action="store_true",
        help="open the emulator's page (its root URL) in the default browser",
    )
    return parser


def open_page(url: str) -> None:
    """Open *url* in the user's browser; say so on stderr when none can be found."""
    import webbrowser

    try:
        opened = webbrowser.open(url)
    except Exception:  # a broken browser setup must not stop the emulator
        opened = False
    if not opened:
        print(f"could not open a browser; the page is at {url}", file=sys.stderr, flush=True)


def main(argv: Optional[list[str]] = None, *, prog: Optional[str] = None) -> int:
    """Run the emulator until SIGINT or SIGTERM; return the exit code."""
    parser = build_parser(prog or "meterstream emulator")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        from meterstream.emulator._faults import FaultConfig
        from meterstream.emulator._server import Emulator
    except ImportError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    faults = FaultConfig(
        fail_500=args.fail_500,
        fail_429=args.fail_429,
        latency_ms=args.latency_ms,
        rps_limit=args.rps_limit,
        expire_next=args.expire_next,
        hang=args.hang,
        should_retry=None if args.should_retry is None else args.should_retry == "true",
        retry_after=args.retry_after,
        apply_to_sessions=args.fault_sessions,
        reject_identifier=args.reject_identifier,
        reject_names_event=not args.reject_without_param,
        redirect_status=args.redirect_status,
        session_trickle_ms=args.session_trickle_ms,
        session_pad_bytes=args.session_pad_bytes,
        **({"redirect_location": args.redirect_location} if args.redirect_location else {}),
    )
    emulator = Emulator(
        args.host,
        args.port,
        session_ttl=args.session_ttl,
        api_keys=args.api_keys,
        auto_create_meters=args.auto_create_meters,
        faults=faults,
        seed=args.seed,
        check_timestamp_range=not args.async_timestamp_errors,
        max_body_bytes=args.max_body_bytes,
        idle_timeout=args.idle_timeout,
        log_level=args.log_level,
    )
    try:
        configure_webhooks(parser, args, emulator.state)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _signals()}
    try:
        try:
            emulator.start()
        except OSError as exc:
            hint = ""
            if exc.errno == errno.EADDRINUSE and args.port:
                hint = " (another emulator? --port 0 picks a free port)"
            print(
                f"{parser.prog}: error: cannot listen on {args.host}:{args.port}: "
                f"{exc.strerror or exc}{hint}",
                file=sys.stderr,
            )
            return 1
        # This process is the emulator's alone, and what it stores (millions
        # of events after a benchmark) holds no reference cycles: keep what
        # exists now out of every future collection, and make the full
        # collections (which walk every stored batch) ten times rarer.
        gc.freeze()
        gc.set_threshold(5000, 20, 100)
        print(emulator.url, flush=True)
        if args.open:
            open_page(emulator.url + "/")
        while not stop.wait(0.5):
            pass
        emulator.stop()
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _signals() -> list[signal.Signals]:
    sigs = [signal.SIGINT]
    if hasattr(signal, "SIGTERM"):
        sigs.append(signal.SIGTERM)
    return sigs


if __name__ == "__main__":
    sys.exit(main(prog="python -m meterstream.emulator"))
