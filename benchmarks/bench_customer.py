"""What a ``with customer(...)`` block costs, around one ``@meter`` call and empty.

Median microseconds per block, measured in chunks of 50 blocks (fewer than a
batch, so the flusher is never woken inside a chunk) with the buffer drained
between chunks, memory exporter. Two set-ups:

* ``own client``: a ``MeterClient`` of the application's own and the
  module-level ``meterstream.customer()``, with no default client (the
  module-level block then uses the settings the default client would have);
* ``default client``: ``meterstream.configure()`` and ``meterstream.meter``.

A bare ``ContextVar.set`` / ``reset`` pair is measured for scale.

    python benchmarks/bench_customer.py [--chunks 2000] [--repeat 5]

A script, not a test: the numbers go to docs/performance.md. It uses the
public API only, so a copy runs against any checkout's ``src/``.
"""

from __future__ import annotations

import argparse
import contextvars
import gc
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import meterstream

CHUNK = 50


def median_us(block: Callable[[], object], drain: Callable[[], object], chunks: int) -> float:
    samples = []
    perf = time.perf_counter_ns
    for _ in range(chunks):
        t0 = perf()
        for _ in range(CHUNK):
            block()
        samples.append((perf() - t0) / CHUNK / 1000)
        drain()  # outside the timed part
    return statistics.median(samples)


def measure(
    label: str, client: meterstream.MeterClient, metered: Callable[[], None], args: Any
) -> None:
    customer = meterstream.customer

    def with_meter() -> None:
        with customer("cus_bench"):
            metered()

    def empty() -> None:
        with customer("cus_bench"):
            pass

    for name, block in (("with customer() + @meter", with_meter), ("with customer()", empty)):
        gc.collect()
        best = min(
            median_us(block, lambda: client.flush(10), args.chunks) for _ in range(args.repeat)
        )
        print(f"  {label + ': ' + name:<42} {best:6.2f} us")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; median us per block over {args.chunks} chunks "
        f"of {CHUNK}, best of {args.repeat}"
    )
    var: contextvars.ContextVar[str] = contextvars.ContextVar("bench")

    def bare() -> None:
        var.reset(var.set("cus_bench"))

    best = min(median_us(bare, lambda: None, args.chunks) for _ in range(args.repeat))
    print(f"  {'ContextVar set + reset':<42} {best:6.2f} us")
    # First, with no default client: it would be made by meterstream.meter.
    own = meterstream.MeterClient(exporter="memory", flush_interval=3600)
    measure("own client", own, own.meter("ai_search_api")(lambda: None), args)
    own.shutdown(1)
    default = meterstream.configure(exporter="memory", flush_interval=3600)
    measure("default client", default, meterstream.meter("ai_search_api")(lambda: None), args)
    default.shutdown(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
