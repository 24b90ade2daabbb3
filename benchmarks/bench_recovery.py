"""Recovery after an outage: how soon delivery resumes once the server answers again.

Default settings (4 senders, a 100,000-event queue). Events are recorded at a
steady rate; throughout, 30% of stream requests are answered 500 and, one
second in five, half of them 429. After ``--before`` seconds the emulator
refuses connections for ``--refused`` seconds, then holds every stream
request unanswered for ``--hanging`` seconds; recording goes on for
``--after`` seconds past the end of the outage, then the client flushes.

    python benchmarks/bench_recovery.py [--rate 2000] [--before 10] [--refused 10]
        [--hanging 10] [--after 30] [--fail-500 0.3] [--runs 1] [--json PATH]

Printed per run: how long after the outage ended delivery resumed (one
second's worth of events sent), how long until the backlog was under one
second's worth again, what was dropped as queue full, and whether the server
stored every event exactly once. The emulator runs in its own process.

A script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import meterstream
from meterstream.emulator import Emulator

KEY = "sk_test_bench"
NAME = "bench_recovery"


def run(
    *, rate: float, before: float, refused: float, hanging: float, after: float, fail_500: float
) -> dict[str, Any]:
    """One run of the scenario; the measurements, in seconds and events."""
    emulator = Emulator.spawn(auto_create_meters=True)
    stop = threading.Event()
    samples: list[tuple[float, int, int]] = []
    try:
        emulator.set_faults(fail_500=fail_500)
        client = meterstream.MeterClient(
            api_key=KEY, api_base=emulator.url, stream_base=emulator.url
        )

        def bursts() -> None:
            # 429 bursts: half the requests refused, one second in five.
            while not stop.wait(4.0):
                try:
                    emulator.set_faults(fail_429=0.5)
                    if stop.wait(1.0):
                        break
                    emulator.set_faults(fail_429=0.0)
                except OSError:
                    pass  # the emulator is refusing connections: its admin API too

        def sample() -> None:
            while not stop.wait(0.05):
                stats = client.stats()
                samples.append((time.monotonic(), stats["sent"], stats["queued"]))

        threads = [threading.Thread(target=f, daemon=True) for f in (bursts, sample)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        outage_at = started + before
        hang_at = outage_at + refused
        end_at = hang_at + hanging
        finish_at = end_at + after
        phase = 0
        done = 0
        tick = 0.01
        with meterstream.customer("cus_recovery"):
            while True:
                now = time.monotonic()
                if now >= finish_at:
                    break
                if phase == 0 and now >= outage_at:
                    # Hung first, so no request slips through when listening resumes.
                    emulator.set_faults(hang=True)
                    emulator.refuse_connections(refused)
                    phase = 1
                elif phase == 1 and now >= end_at:
                    emulator.set_faults(hang=False)
                    ended = time.monotonic()
                    phase = 2
                due = int((now - started) * rate)
                for _ in range(due - done):
                    client.record(NAME, 1)
                done = due
                time.sleep(tick)
        stop.set()
        for thread in threads:
            thread.join()
        emulator.set_faults(fail_429=0.0, fail_500=0.0)
        flushed = client.flush(300)
        stats = client.stats()
        client.shutdown(5)
        snapshot = emulator.snapshot()
    finally:
        stop.set()
        emulator.stop()
    stored = sum(int(t["count"]) for t in snapshot["totals"] if t["event_name"] == NAME)
    sent_at_end = next(sent for at, sent, _ in samples if at >= ended)
    resumed = next(
        (at - ended for at, sent, _ in samples if at >= ended and sent >= sent_at_end + rate),
        None,
    )
    caught_up = next(
        (at - ended for at, _, queued in samples if at >= ended and queued <= rate), None
    )
    # Rounded for reading; None: not within --after seconds.
    resumed = None if resumed is None else round(resumed, 2)
    caught_up = None if caught_up is None else round(caught_up, 2)
    return {
        "recorded": done,
        "resumed_after_s": resumed,
        "caught_up_after_s": caught_up,
        "longest_pause_after_s": _longest_pause(samples, ended),
        "dropped_queue_full": stats["dropped_queue_full"],
        "sent": stats["sent"],
        "stored": stored,
        "flushed": flushed,
        "exactly_once": stored == done == stats["sent"],
    }


def _longest_pause(samples: list[tuple[float, int, int]], ended: float) -> float:
    """The longest time after *ended* with nothing sent, from the samples."""
    longest = 0.0
    since = None
    last_sent = None
    for at, sent, _ in samples:
        if at < ended:
            last_sent = sent
            continue
        if since is None:
            since = ended
        longest = max(longest, at - since)
        if sent != last_sent:
            since = at
            last_sent = sent
    return round(longest, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--before", type=float, default=10.0)
    parser.add_argument("--refused", type=float, default=10.0)
    parser.add_argument("--hanging", type=float, default=10.0)
    parser.add_argument("--after", type=float, default=30.0)
    parser.add_argument("--fail-500", type=float, default=0.3)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", help="also write the runs' results to this file")
    args = parser.parse_args()
    results = []
    for n in range(args.runs):
        result = run(
            rate=args.rate,
            before=args.before,
            refused=args.refused,
            hanging=args.hanging,
            after=args.after,
            fail_500=args.fail_500,
        )
        results.append(result)
        print(f"run {n + 1}: " + json.dumps(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(results, file, indent=2)
    bad = any(r["dropped_queue_full"] or not r["exactly_once"] for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
