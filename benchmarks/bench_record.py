"""What recording costs the caller: @meter on an empty function, and record().

Median nanoseconds added per call, measured in chunks of 50 calls (fewer than a
batch, so the chunk itself never wakes the flusher) with the buffer drained
between chunks, against the same empty function undecorated. The memory
exporter is configured, as for tests.

    python benchmarks/bench_record.py [--chunks 4000] [--repeat 5] [--json PATH]

``--json`` also writes the results (ns per call, by case) for
benchmarks/plot_performance.py.

A script, not a test: the numbers go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import meterstream

CHUNK = 50


def median_added_ns(
    baseline: Callable[[], object],
    measured: Callable[[], object],
    client: meterstream.MeterClient,
    chunks: int,
) -> float:
    samples = []
    perf = time.perf_counter_ns
    for _ in range(chunks):
        t0 = perf()
        for _ in range(CHUNK):
            baseline()
        t1 = perf()
        for _ in range(CHUNK):
            measured()
        t2 = perf()
        samples.append(((t2 - t1) - (t1 - t0)) / CHUNK)
        client.flush(10)  # drain, outside the timed part
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    client = meterstream.configure(exporter="memory", flush_interval=3600)

    def empty() -> None:
        return None

    decorated = meterstream.meter("ai_search_api")(empty)
    valued = meterstream.meter("llm_tokens", value=lambda call: 42)(empty)

    def record() -> None:
        meterstream.record("ai_search_api")

    cases = {
        "@meter (constant value)": decorated,
        "@meter (value callable)": valued,
        "record()": record,
    }
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; median ns added per call over {args.chunks} chunks "
        f"of {CHUNK}, best of {args.repeat}"
    )
    gc.collect()
    results: dict[str, float] = {}
    with meterstream.customer("cus_bench"):
        for name, fn in cases.items():
            best = min(median_added_ns(empty, fn, client, args.chunks) for _ in range(args.repeat))
            client.exporter.clear()  # type: ignore[attr-defined]
            results[name] = best
            print(f"  {name:<26} {best:8.0f} ns")
    client.shutdown(1)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"ns_per_call": results, "python": platform.python_version()}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
