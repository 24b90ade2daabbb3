"""``meterstream relay --nats-url URL [--workers N] ...``: JetStream -> Stripe."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any, Optional

from meterstream.errors import ConfigurationError

__all__ = ["add_relay_parser", "run_relay"]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def _at_least_0(text: str) -> int:
    return 0 if text.strip() == "0" else _positive(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def add_relay_parser(sub: Any, connection_args: Any) -> None:
    """Add ``relay`` to the CLI's subparsers; *connection_args* adds --api-key etc."""
    relay = sub.add_parser(
        "relay",
        help="deliver events from NATS JetStream to Stripe (fleet mode)",
        description="Take events the apps published with exporter=nats from the JetStream "
        "stream and deliver them to Stripe. Run as many as you like, on any machines: they "
        "share one durable consumer and one request budget. SIGTERM stops cleanly.",
    )
    relay.add_argument(
        "--nats-url",
        required=True,
        metavar="URL",
        help="NATS server URL(s), comma-separated (nats://host:4222)",
    )
    relay.add_argument("--stream", default="METERSTREAM", help="the stream (default METERSTREAM)")
    relay.add_argument("--credentials", metavar="FILE", help="NATS credentials (.creds) file")
    relay.add_argument("--tls-ca", metavar="FILE", help="CA bundle for TLS to NATS")
    relay.add_argument(
        "--workers", type=_positive, default=2, help="batches in flight at once (default 2)"
    )
    relay.add_argument(
        "--batch-size", type=_positive, default=100, help="events per request, 1..100 (100)"
    )
    relay.add_argument(
        "--max-rps",
        type=_at_least_0,
        default=0,
        help="Stripe requests per second for ALL relays together (0: no limit)",
    )
    relay.add_argument(
        "--destination",
        choices=("stripe", "metronome"),
        default="stripe",
        help="where the relay delivers (default stripe); a parallel run is one group of relays "
        "per destination, each with its own durable consumer, so each gets every event",
    )
    relay.add_argument(
        "--metronome-base",
        metavar="URL",
        help="with --destination metronome: base URL of Metronome's API "
        "(token: METRONOME_BEARER_TOKEN)",
    )
    relay.add_argument(
        "--durable",
        help="durable consumer name, shared by the relays of one destination (default "
        "meterstream-relay; with --destination metronome, meterstream-relay-metronome)",
    )
    relay.add_argument(
        "--ack-wait",
        type=_seconds,
        default=60.0,
        help="seconds before JetStream redelivers a dead relay's messages (default 60)",
    )
    relay.add_argument(
        "--drain-timeout",
        type=_seconds,
        default=10.0,
        help="seconds SIGTERM waits for batches in flight (default 10)",
    )
    relay.add_argument(
        "--max-retry-time",
        type=_seconds,
        default=300.0,
        help="seconds a batch retries before it is handed back to the stream (default 300)",
    )
    relay.add_argument(
        "--aggregate",
        metavar="NAME=sum,...",
        help="aggregate the uses of these sum meters across the fleet, exactly once: one event "
        "per customer, dimensions and window (see docs/fleet.md)",
    )
    relay.add_argument(
        "--aggregation-window",
        metavar="SECONDS",
        default="5",
        help="the aggregation window, seconds dividing a minute (default 5)",
    )
    relay.add_argument(
        "--aggregate-batch",
        "--fold-batch",  # its earlier name, still taken
        type=_positive,
        default=1000,
        help="with --aggregate: messages a worker aggregates at a time (default 1000)",
    )
    connection_args(relay)
    relay.set_defaults(parser=relay)


def nats_missing() -> bool:
    """True, after one line naming the extra to install, when nats-py is not installed."""
    try:
        import nats  # noqa: F401
    except ImportError:
        print(
            "meterstream relay: needs the NATS client: pip install 'meterstream[nats]'",
            file=sys.stderr,
        )
        return True
    return False


def run_relay(args: argparse.Namespace, connection: dict[str, Any]) -> int:
    """Run until SIGTERM/SIGINT; exit 2 on a usage mistake, 0 after a clean stop."""
    from meterstream._config.aggregate import parse_aggregate, parse_aggregation_window
    from meterstream._config.nats import parse_file, parse_nats_stream, parse_nats_urls
    from meterstream._config.settings import Settings
    from meterstream._exporters.base import Exporter
    from meterstream._exporters.stripe import StripeAPI, StripeExporter
    from meterstream._fleet.nats import NatsOptions
    from meterstream._fleet.relay import Relay
    from meterstream._fleet.relay_config import RelayConfig

    if args.batch_size > 100:
        args.parser.error("--batch-size: Stripe takes at most 100 events a request")
    try:
        urls = parse_nats_urls(args.nats_url, "--nats-url")
        if urls is None:
            raise ConfigurationError("--nats-url: give at least one nats:// URL")
        options = NatsOptions(
            urls,
            stream=parse_nats_stream(args.stream, "--stream"),
            credentials=parse_file(args.credentials, "--credentials"),
            tls_ca=parse_file(args.tls_ca, "--tls-ca"),
            url_setting="--nats-url",
        )
        aggregate = parse_aggregate(args.aggregate, "--aggregate")
        window = parse_aggregation_window(args.aggregation_window, "--aggregation-window")
        options_given: dict[str, Any] = {
            **connection,
            "exporter": args.destination,
            "max_concurrent_requests": min(64, args.workers),
        }
        if args.metronome_base:
            options_given["metronome_base"] = args.metronome_base
        settings = Settings.resolve(options_given)
        if args.destination == "metronome" and not settings.metronome_api_key:
            raise ConfigurationError("--destination metronome: set METRONOME_BEARER_TOKEN")
    except ConfigurationError as exc:
        print(f"meterstream relay: {exc}", file=sys.stderr)
        return 2
    config = RelayConfig(
        options,
        workers=args.workers,
        batch_size=args.batch_size,
        max_rps=args.max_rps,
        durable=args.durable
        or ("meterstream-relay" if args.destination == "stripe" else "meterstream-relay-metronome"),
        ack_wait=args.ack_wait,
        drain_timeout=args.drain_timeout,
        max_retry_time=args.max_retry_time,
        retry_initial_delay=settings.retry_initial_delay,
        retry_max_delay=settings.retry_max_delay,
        aggregate=aggregate,
        aggregation_window=window,
        aggregate_batch=args.aggregate_batch,
    )
    # A relay is a service: it says what it does (start, stop, dead letters).
    relay_log = logging.getLogger("meterstream.relay")
    if relay_log.level == logging.NOTSET:
        relay_log.setLevel(logging.INFO)
    try:
        exporter: Exporter
        api: Optional[StripeAPI] = None
        if args.destination == "metronome":
            from meterstream._exporters.metronome import MetronomeExporter

            exporter = MetronomeExporter(settings)
        else:
            exporter = StripeExporter(settings)
            api = StripeAPI.from_settings(settings) if aggregate else None
    except ConfigurationError as exc:
        print(f"meterstream relay: {exc}", file=sys.stderr)
        return 2
    relay = Relay(config, exporter, meters=api)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await relay.run(stop)

    try:
        asyncio.run(main())
    except ConfigurationError as exc:
        hint = exc.args[0].replace("nats_credentials", "--credentials")
        print(f"meterstream relay: {hint}", file=sys.stderr)
        return 2
    finally:
        exporter.shutdown()
        if api is not None:
            api.close()
    return 0
