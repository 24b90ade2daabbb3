"""``meterstream demo``: a small metered service, end to end, on the local emulator."""

from __future__ import annotations

import math
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, Callable, Optional

from meterstream._client.client import MeterClient
from meterstream._exporters.stripe import StripeAPI
from meterstream._record.context import customer as customer_block

__all__ = ["run_demo"]

DEMO_KEY = "sk_test_meterstream_demo"
EVENTS = ("ai_search_api", "llm_tokens")


def run_demo(
    *,
    calls: int = 3000,
    customers: int = 5,
    workers: int = 16,
    progress: bool = True,
    spool: Optional[str] = None,
    keep: bool = False,
    wait: Optional[Callable[[], None]] = None,
) -> int:
    """Run the demo; 0 when the emulator's summaries match what was metered.

    With *keep*, the emulator stays up after the comparison until Ctrl-C
    (or until *wait* returns, for tests), so that its page can be looked at.
    """
    try:
        from meterstream.emulator import Emulator
    except ImportError as exc:
        print(f"meterstream demo: {exc}", file=sys.stderr)
        return 1
    if calls < 1 or customers < 1 or workers < 1:
        print("meterstream demo: --calls, --customers and --workers must be >= 1", file=sys.stderr)
        return 2
    out = sys.stdout
    # A progress bar is for a person at a terminal, not for a pipe or a file.
    progress = progress and _is_terminal(out)
    with Emulator() as emulator:
        for event_name in EVENTS:  # the meters, made first as they are at Stripe
            emulator.create_meter(event_name)
        print(f"Stripe emulator listening on {emulator.url}", file=out)
        print(f"See what is metered, live: {emulator.url}/", file=out, flush=True)
        client = MeterClient(
            api_key=DEMO_KEY,
            api_base=emulator.api_base,
            stream_base=emulator.stream_base,
            exporter="stripe",
            spool_path=spool,
        )
        service = _Service(client)
        customer_ids = [f"cus_demo{n:03d}" for n in range(1, customers + 1)]
        started_wall = time.time()
        started = time.perf_counter()
        print(
            f"Metering {_count(calls, 'API call')} from {_count(customers, 'customer')} "
            f"on {_count(workers, 'thread')}...",
            file=out,
        )
        done = [0]
        lock = threading.Lock()

        def one_call(n: int) -> None:
            with customer_block(customer_ids[n % customers]):
                service.handle(f"query {n}")
            with lock:
                done[0] += 1
                count = done[0]
                if progress and (count % max(1, calls // 20) == 0 or count == calls):
                    _progress(out, count, calls)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one_call, range(calls)))
        flushed = client.flush(30)
        elapsed = time.perf_counter() - started
        stats = client.stats()
        client.shutdown(5)
        if progress:
            out.write("\n")
        print(
            f"Recorded {_count(stats['recorded'], 'event')}, delivered {stats['sent']} in "
            f"{_count(stats['requests'], 'request')} "
            f"({_count(stats['sessions_opened'], 'session')}) in {elapsed:.2f}s.",
            file=out,
        )
        if not flushed:
            print("meterstream demo: events were not all delivered within 30s", file=sys.stderr)
            return 1
        matched = _compare(emulator.api_base, service.totals, customer_ids, started_wall, out)
        if keep:
            print(
                f"\nThe emulator stays up: open {emulator.url}/ (Ctrl-C to stop).",
                file=out,
                flush=True,
            )
            try:
                (wait or _until_interrupted)()
            except KeyboardInterrupt:
                pass
    return 0 if matched else 1


def _until_interrupted() -> None:
    threading.Event().wait()


class _Service:
    """The 'application': an AI search API metered per call and per token."""

    def __init__(self, client: MeterClient) -> None:
        self.totals: dict[tuple[str, str], Decimal] = {}
        self._lock = threading.Lock()
        self._rng = random.Random(7)
        self.search = client.meter("ai_search_api")(self._search)
        self.complete = client.meter(
            "llm_tokens", value=lambda call: call.result["usage"]["total_tokens"]
        )(self._complete)

    def handle(self, query: str) -> None:
        from meterstream._record.context import current_customer

        results = self.search(query)
        answer = self.complete(query, results)
        customer = current_customer() or ""
        with self._lock:
            for event, value in (
                ("ai_search_api", 1),
                ("llm_tokens", answer["usage"]["total_tokens"]),
            ):
                key = (event, customer)
                self.totals[key] = self.totals.get(key, Decimal(0)) + value

    def _search(self, query: str) -> list[str]:
        return [f"{query} result {n}" for n in range(3)]

    def _complete(self, query: str, results: list[str]) -> dict[str, Any]:
        with self._lock:
            tokens = 50 + self._rng.randrange(200)
        return {"text": f"answer to {query}", "usage": {"total_tokens": tokens}}


def _is_terminal(out: Any) -> bool:
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError):
        return False


def _progress(out: Any, count: int, total: int) -> None:
    width = 30
    filled = int(width * count / total)
    bar = "#" * filled + "." * (width - filled)
    out.write(f"  [{bar}] {count}/{total} calls\r")
    out.flush()


def _compare(
    api_base: str,
    local: dict[tuple[str, str], Decimal],
    customer_ids: list[str],
    started: float,
    out: Any,
) -> bool:
    start = int(started // 60) * 60
    end = int(math.ceil((time.time() + 1) / 60)) * 60
    print("\nPer-customer totals: metered locally vs Stripe emulator event summaries", file=out)
    header = f"{'customer':<14}  {'event':<14}  {'local':>10}  {'emulator':>10}  "
    print(header + "match", file=out)
    print("-" * (len(header) + 5), file=out)
    all_match = True
    with StripeAPI(DEMO_KEY, api_base) as api:
        for event in EVENTS:
            meter = api.meter_for_event(event)
            for customer_id in customer_ids:
                expected = local.get((event, customer_id), Decimal(0))
                remote = Decimal(0)
                if meter is not None:
                    for row in api.event_summaries(meter["id"], customer_id, start, end):
                        remote += Decimal(str(row["aggregated_value"]))
                ok = remote == expected
                all_match &= ok
                print(
                    f"{customer_id:<14}  {event:<14}  {_num(expected):>10}  {_num(remote):>10}  "
                    f"{'yes' if ok else 'NO'}",
                    file=out,
                )
    if all_match:
        print(f"\nAll {len(customer_ids) * len(EVENTS)} totals match.", file=out)
    else:
        print("\nMISMATCH: some totals differ.", file=out)
    return all_match


def _count(n: int, noun: str) -> str:
    """``1 event``, ``2 events``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _num(value: Decimal) -> str:
    return format(value.normalize(), "f")
