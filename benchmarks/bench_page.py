"""The emulator's page with a million stored events: how long its JSON takes.

Ingests N events (default 1,000,000) straight through ``EmulatorState.ingest``
in 100-event batches (two meters, 1,000 customers, timestamps over the past
day), then times:

- the first read, which turns the stored batches into records, totals and
  hourly buckets (``state.totals()``: every read pays this once for what
  arrived since the previous read; the page's polls pay it a second at a time);
- ``GET /_emulator/overview`` over HTTP, as the page polls it: with nothing new,
  and with one 100-event batch new since the previous poll.

    python benchmarks/bench_page.py [--events 1000000] [--polls 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import httpx

from meterstream.emulator import Emulator
from meterstream.emulator._validate import format_rfc3339


def batches(count: int, now: float) -> list[dict[str, object]]:
    out = []
    for b in range(count // 100):
        events = []
        for i in range(100):
            n = b * 100 + i
            events.append(
                {
                    "event_name": "llm_tokens" if n % 2 else "api_requests",
                    "payload": {"stripe_customer_id": f"cus_{n % 1000:04d}", "value": str(n % 97)},
                    "identifier": f"bench-{n}",
                    "timestamp": format_rfc3339(now - 86000 + (n * 86000) / count),
                }
            )
        out.append({"events": events})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--polls", type=int, default=50)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs")
    now = time.time()
    bodies = batches(args.events, now)
    with Emulator(auto_create_meters=True) as emulator:
        state = emulator.state
        started, cpu = time.perf_counter(), time.process_time()
        for body in bodies:
            state.ingest(body)
        ingest, ingest_cpu = time.perf_counter() - started, time.process_time() - cpu
        print(
            f"ingest: {args.events:,} events in {ingest:.2f} s, CPU {ingest_cpu:.2f} s "
            f"({args.events / ingest:,.0f} events/s, state.ingest, no HTTP)"
        )
        started, cpu = time.perf_counter(), time.process_time()
        state.totals()
        print(
            f"first read (index {args.events:,} events): {time.perf_counter() - started:.2f} s, "
            f"CPU {time.process_time() - cpu:.2f} s"
        )
        if not hasattr(state, "overview"):
            return 0  # an emulator without the page: the index time is the comparison
        extra = batches(100 * (args.polls + 1), now + 1)
        for body in extra:
            for event in body["events"]:  # type: ignore[attr-defined]
                event["identifier"] = "more-" + event["identifier"]
        with httpx.Client(base_url=emulator.url, timeout=60) as http:
            first = time.perf_counter()
            answer = http.get("/_emulator/overview")
            first_ms = (time.perf_counter() - first) * 1000
            size = len(answer.content)
            cursor = answer.json()["events"]["cursor"]
            idle, busy = [], []
            for _ in range(args.polls):
                t = time.perf_counter()
                cursor = http.get("/_emulator/overview", params={"after": cursor}).json()["events"][
                    "cursor"
                ]
                idle.append((time.perf_counter() - t) * 1000)
            for body in extra[: args.polls]:
                state.ingest(body)
                t = time.perf_counter()
                cursor = http.get("/_emulator/overview", params={"after": cursor}).json()["events"][
                    "cursor"
                ]
                busy.append((time.perf_counter() - t) * 1000)
            page = http.get("/")
    print(f"GET /_emulator/overview, first: {first_ms:.1f} ms, {size:,} bytes")
    print(
        f"GET /_emulator/overview, nothing new: median {statistics.median(idle):.1f} ms, "
        f"max {max(idle):.1f} ms ({args.polls} polls)"
    )
    print(
        f"GET /_emulator/overview, 100 new events: median {statistics.median(busy):.1f} ms, "
        f"max {max(busy):.1f} ms ({args.polls} polls)"
    )
    print(f"GET /: {page.status_code}, {len(page.content):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
