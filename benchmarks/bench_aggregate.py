"""Aggregating uses (pre-aggregation) beside recording them one event each.

Uses per second on 1 and 8 threads, and process CPU per use, for:

- ``record()``: ``MeterClient(exporter="none").record`` with a customer,
  the plain path (its delivery thread drains the buffer meanwhile);
- ``Aggregator.add``: aggregating alone, what replaces the buffer append;
- ``checks + Aggregator.add``: the record path's checks (event name, value,
  customer) then the aggregation: what an aggregated ``record()`` will cost;

with int values (token counts) and float values (``call.elapsed * 1000``).
Then the events an aggregation produces for 100 customers. The ``none`` exporter
encodes nothing: with the Stripe exporter, record() would also pay for
writing each float (``format_value``) on the delivery thread.

Last, end to end against the emulator (spawned in its own process, so its
CPU is not counted): ``record()`` with the Stripe exporter from 4 threads,
then ``flush()``, with and without aggregation, with a spool and without:
uses recorded per second, events delivered per second (and how many),
uses per second from the first record to flush() returning, and process
CPU per use (every thread of this process, delivery included).

    python benchmarks/bench_aggregate.py [--uses 400000] [--repeat 3] [--e2e-uses 40000]
    python benchmarks/bench_aggregate.py --record-only [--uses 400000] [--repeat 5]

``--record-only`` prints just ``record()`` on 8 threads (and 1) with and
without ``aggregate``, runs of the two interleaved so that load from other
jobs falls on both alike: issue 17's "record cost no higher than without
aggregation", beside each other in one run.

A script, not a test: the numbers go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import threading
import time
from typing import Any, Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import httpx

import meterstream
from meterstream._aggregate.aggregator import Aggregator
from meterstream._record import checks as _checks
from meterstream.emulator import Emulator

CUSTOMERS = [f"cus_{i:03d}" for i in range(100)]
KEY = "sk_test_bench"
E2E_THREADS = 4


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


def record_side_by_side(uses: int, repeat: int, ints: list[Any], floats: list[Any]) -> None:
    """record() with and without aggregate, interleaved run by run: best of *repeat*."""
    plain = meterstream.MeterClient(exporter="none", max_queue_size=10_000_000)
    aggregation = meterstream.MeterClient(
        exporter="none", max_queue_size=10_000_000, aggregate={"llm_tokens": "sum"}
    )

    def recorder(client: meterstream.MeterClient) -> Callable[[str, Any], object]:
        record = client.record

        def one(customer: str, value: Any) -> None:
            record("llm_tokens", value, customer=customer)

        return one

    def finisher(client: meterstream.MeterClient) -> Callable[[], object]:
        return lambda: client.flush(30)

    print(
        f"record() with and without aggregate: {uses:,} uses per run, best of {repeat}, "
        f"interleaved; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'values':8} {'threads':>7} {'plain uses/s':>13} {'CPU/use':>9} "
        f"{'aggregated uses/s':>18} {'CPU/use':>9}"
    )
    for kind, values in (("ints", ints), ("floats", floats)):
        for threads in (8, 1):
            best: dict[str, tuple[float, float, float]] = {}
            for _ in range(repeat):
                for label, client in (("plain", plain), ("aggregated", aggregation)):
                    r = run(threads, uses, recorder(client), values, finisher(client))
                    if label not in best or r[0] > best[label][0]:
                        best[label] = r
            p, a = best["plain"], best["aggregated"]
            print(
                f"{kind:8} {threads:>7} {p[0]:>13,.0f} {p[1]:>6.2f} us "
                f"{a[0]:>18,.0f} {a[1]:>6.2f} us"
            )
    stats = aggregation.stats()
    assert stats["dropped"] == 0 and plain.stats()["dropped"] == 0, stats
    plain.shutdown(5)
    aggregation.shutdown(5)


def end_to_end(
    url: str, directory: str, uses: int, values: list[Any], *, spool: bool, aggregate: bool
) -> dict[str, float]:
    """Record *uses* from 4 threads to the emulator at *url*, then flush()."""
    settings: dict[str, Any] = {"api_key": KEY, "api_base": url, "stream_base": url}
    if spool:
        settings["spool_path"] = os.path.join(directory, f"e2e-{aggregate}.db")
    else:
        settings["max_queue_size"] = 10_000_000
    if aggregate:
        settings["aggregate"] = {"llm_tokens": "sum"}
    client = meterstream.MeterClient(**settings)
    per_thread = uses // E2E_THREADS
    barrier = threading.Barrier(E2E_THREADS + 1)

    def work(offset: int) -> None:
        record = client.record
        n = len(values)
        barrier.wait()
        for i in range(offset, offset + per_thread):
            record("llm_tokens", values[i % n], customer=CUSTOMERS[i % 100])

    pool = [threading.Thread(target=work, args=(t * 7919,)) for t in range(E2E_THREADS)]
    for thread in pool:
        thread.start()
    barrier.wait()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for thread in pool:
        thread.join()
    recorded = time.perf_counter() - wall0
    assert client.flush(600), f"flush() did not finish: {client.stats()}"
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    stats = client.stats()
    client.shutdown(10)
    total = per_thread * E2E_THREADS
    assert stats["dropped"] == 0 and stats["failed"] == 0, stats
    return {
        "record_uses_per_s": total / recorded,
        "events": stats["sent"],
        "events_per_s": stats["sent"] / wall,
        "uses_per_s": total / wall,
        "cpu_us_per_use": cpu / total * 1e6,
    }


def end_to_end_table(uses: int, values: list[Any]) -> None:
    emulator = Emulator.spawn(api_keys=[KEY])
    try:
        # A sum meter: the client's meter check keeps aggregating llm_tokens.
        httpx.post(
            emulator.url + "/v1/billing/meters",
            headers={"Authorization": f"Bearer {KEY}"},
            data={
                "display_name": "llm_tokens",
                "event_name": "llm_tokens",
                "default_aggregation[formula]": "sum",
            },
        ).raise_for_status()
        print(
            f"\nEnd to end: {uses:,} int uses from {E2E_THREADS} threads, 100 customers, "
            "Stripe exporter to the emulator (its own process); load average "
            f"{os.getloadavg()[0]:.1f}"
        )
        print(
            f"{'case':34} {'recorded/s':>11} {'events':>8} {'events/s':>10} "
            f"{'uses/s e2e':>11} {'CPU/use':>10}"
        )
        with tempfile.TemporaryDirectory(prefix="bench-aggregate-") as directory:
            for spool in (False, True):
                for aggregate in (False, True):
                    r = end_to_end(
                        emulator.url, directory, uses, values, spool=spool, aggregate=aggregate
                    )
                    name = ("spool, " if spool else "memory, ") + (
                        "aggregation" if aggregate else "no aggregation"
                    )
                    print(
                        f"{name:34} {r['record_uses_per_s']:>11,.0f} {r['events']:>8,.0f} "
                        f"{r['events_per_s']:>10,.0f} {r['uses_per_s']:>11,.0f} "
                        f"{r['cpu_us_per_use']:>7.2f} us"
                    )
    finally:
        emulator.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uses", type=int, default=400_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--e2e-uses", type=int, default=40_000, help="0 skips the emulator runs")
    parser.add_argument(
        "--record-only",
        action="store_true",
        help="only record() with and without aggregate, side by side",
    )
    args = parser.parse_args(argv)

    rng = random.Random(1)
    ints = [rng.randint(1, 4000) for _ in range(1000)]
    floats = [rng.uniform(0.01, 5000.0) for _ in range(1000)]
    if args.record_only:
        record_side_by_side(args.uses, args.repeat, ints, floats)
        return 0

    client = meterstream.MeterClient(exporter="none", max_queue_size=10_000_000)
    aggregator = Aggregator(["llm_tokens"], 5)
    add = aggregator.add

    def record(customer: str, value: Any) -> None:
        client.record("llm_tokens", value, customer=customer)

    def aggregate(customer: str, value: Any) -> None:
        add("llm_tokens", customer, value, None)

    check_name, check_value, check_customer = (
        _checks.check_event_name,
        _checks.check_value,
        _checks.check_customer,
    )

    def checked_aggregate(customer: str, value: Any) -> None:
        check_name("llm_tokens")
        check_customer(customer)
        add("llm_tokens", customer, check_value(value), None)

    def close() -> None:
        aggregator.close(force=True)

    def drain() -> None:
        client.flush(30)

    cases: list[tuple[str, Callable[[str, Any], object], list[Any]]] = [
        ("record() (no aggregation), ints", record, ints),
        ("Aggregator.add, ints", aggregate, ints),
        ("checks + Aggregator.add, ints", checked_aggregate, ints),
        ("record() (no aggregation), floats", record, floats),
        ("Aggregator.add, floats", aggregate, floats),
        ("checks + Aggregator.add, floats", checked_aggregate, floats),
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
    aggregator = Aggregator(["llm_tokens"], 5)
    events: list[Any] = []
    stop = threading.Event()

    def closer() -> None:
        while not stop.wait(0.05):
            events.extend(aggregator.close())

    closing = threading.Thread(target=closer)
    closing.start()
    t0 = time.perf_counter()
    rate, _, _ = run(8, args.uses * 5, lambda c, v: aggregator.add("llm_tokens", c, v, None), ints)
    stop.set()
    closing.join()
    events.extend(aggregator.close(force=True))
    uses = aggregator.stats()["aggregated_uses"]
    print(
        f"\n{uses:,} uses from 8 threads over {time.perf_counter() - t0:.1f} s "
        f"({rate:,.0f}/s) -> {len(events):,} events: {uses / max(1, len(events)):,.0f}x fewer"
    )
    if dropped:
        print(f"(record() dropped {dropped} events: the buffer was full)")
    if args.e2e_uses:
        end_to_end_table(args.e2e_uses, ints)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
