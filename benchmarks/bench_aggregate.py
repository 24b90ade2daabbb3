"""Folding uses (pre-aggregation) beside recording them one event each.

Uses per second on 1 and 8 threads, and process CPU per use, for:

- ``record()``: ``MeterClient(exporter="none").record`` with a customer,
  the plain path (its delivery thread drains the buffer meanwhile);
- ``Folder.add``: folding alone, what replaces the buffer append;
- ``checks + Folder.add``: the record path's checks (event name, value,
  customer) then the fold: what an aggregated ``record()`` will cost;

with int values (token counts) and float values (``call.elapsed * 1000``).
Then the events a fold produces for 100 customers. The ``none`` exporter
encodes nothing: with the Stripe exporter, record() would also pay for
writing each float (``format_value``) on the delivery thread.

    python benchmarks/bench_aggregate.py [--uses 400000] [--repeat 3]

A script, not a test: the numbers go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import threading
import time
from typing import Any, Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import meterstream
from meterstream import _events
from meterstream._aggregate import Folder

CUSTOMERS = [f"cus_{i:03d}" for i in range(100)]


def run(
    threads: int,
    uses: int,
    one: Callable[[str, Any], object],
    values: list[Any],
    finish: Callable[[], object] = lambda: None,
) -> tuple[float, float, float]:
    """(uses per second, CPU microseconds per use, the same with *finish*) of
    *uses* calls spread over *threads*, then *finish* (closing the windows)."""
    per_thread = uses // threads
    barrier = threading.Barrier(threads + 1)

    def work(offset: int) -> None:
        customers = CUSTOMERS
        n = len(values)
        barrier.wait()
        for i in range(offset, offset + per_thread):
            one(customers[i % 100], values[i % n])

    pool = [threading.Thread(target=work, args=(t * 7919,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for thread in pool:
        thread.join()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finish()
    cpu_all = time.process_time() - cpu0
    total = per_thread * threads
    return total / wall, cpu / total * 1e6, cpu_all / total * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uses", type=int, default=400_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    rng = random.Random(1)
    ints = [rng.randint(1, 4000) for _ in range(1000)]
    floats = [rng.uniform(0.01, 5000.0) for _ in range(1000)]

    client = meterstream.MeterClient(exporter="none", max_queue_size=10_000_000)
    folder = Folder(["llm_tokens"], 5)
    add = folder.add

    def record(customer: str, value: Any) -> None:
        client.record("llm_tokens", value, customer=customer)

    def fold(customer: str, value: Any) -> None:
        add("llm_tokens", customer, value, None)

    check_name, check_value, check_customer = (
        _events.check_event_name,
        _events.check_value,
        _events.check_customer,
    )

    def checked_fold(customer: str, value: Any) -> None:
        check_name("llm_tokens")
        check_customer(customer)
        add("llm_tokens", customer, check_value(value), None)

    def close() -> None:
        folder.close(force=True)

    def drain() -> None:
        client.flush(30)

    cases: list[tuple[str, Callable[[str, Any], object], list[Any]]] = [
        ("record() (no aggregation), ints", record, ints),
        ("Folder.add, ints", fold, ints),
        ("checks + Folder.add, ints", checked_fold, ints),
        ("record() (no aggregation), floats", record, floats),
        ("Folder.add, floats", fold, floats),
        ("checks + Folder.add, floats", checked_fold, floats),
    ]
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"{args.uses:,} uses per run, best of {args.repeat}; 100 customers"
    )
    print(
        "CPU/use: process CPU while the threads record; +close: with closing the "
        "windows (or draining the buffer) after them"
    )
    print(f"{'case':36} {'threads':>7} {'uses/s':>12} {'CPU/use':>10} {'+close':>10}")
    for name, one, values in cases:
        finish = drain if one is record else close
        for threads in (1, 8):
            best = max(
                (run(threads, args.uses, one, values, finish) for _ in range(args.repeat)),
                key=lambda r: r[0],
            )
            print(f"{name:36} {threads:>7} {best[0]:>12,.0f} {best[1]:>8.2f} us {best[2]:>7.2f} us")
    dropped = client.stats().get("dropped", 0)
    client.shutdown(5)

    # Events on the wire for 100 customers: every use of a 5-second window
    # from 8 threads, closed as the windows end.
    folder = Folder(["llm_tokens"], 5)
    events: list[Any] = []
    stop = threading.Event()

    def closer() -> None:
        while not stop.wait(0.05):
            events.extend(folder.close())

    closing = threading.Thread(target=closer)
    closing.start()
    t0 = time.perf_counter()
    rate, _, _ = run(8, args.uses * 5, lambda c, v: folder.add("llm_tokens", c, v, None), ints)
    stop.set()
    closing.join()
    events.extend(folder.close(force=True))
    uses = folder.stats()["aggregated_uses"]
    print(
        f"\n{uses:,} uses from 8 threads over {time.perf_counter() - t0:.1f} s "
        f"({rate:,.0f}/s) -> {len(events):,} events: {uses / max(1, len(events)):,.0f}x fewer"
    )
    if dropped:
        print(f"(record() dropped {dropped} events: the buffer was full)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
