"""The durable spool: what record() costs with spool_path, and durable events/s end to end.

All in one run:

  record(), spool, 1 thread    median ns per call, spool_sync=normal
  record(), spool, 8 threads   the same, eight threads recording at once (each
                               thread's own calls), and their records/s together
                               beside one thread's (group commit: threads that
                               record at once share a transaction)
  record(), no spool           exporter="none": the in-memory record path
  bare sqlite3 insert+commit   one row a transaction, WAL, synchronous=NORMAL:
                               the floor a durable record() stands on
  end to end                   events/s from the first record() to flush()
                               returning, delivered to the emulator (spawned in
                               its own process) through the spool: from one
                               producer thread, and from eight (a web app
                               records from its request threads)

Per-call costs are medians over chunks of 50 calls. While record() is timed,
the emulator hangs every request, so delivery claims a few batches and waits
instead of competing for the write lock: what is measured is the caller's cost.

    python benchmarks/bench_spool.py [--chunks 2000] [--events 100000] [--json PATH]

A script, not a test: the numbers go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from typing import Any, Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import meterstream
from meterstream.emulator import Emulator

KEY = "sk_test_bench"
CHUNK = 50


#: Calls per second, all threads together, of the last chunk_medians run.
LAST_RATE: list[float] = [0.0]


def chunk_medians(call: Callable[[int], object], chunks: int, threads: int) -> float:
    """Median ns per call over chunks of CHUNK calls, each of *threads* threads timing its own."""
    samples: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def run(worker: int) -> None:
        mine = []
        perf = time.perf_counter_ns
        n = worker * 10_000_000
        start.wait()
        for _ in range(chunks):
            t0 = perf()
            for _ in range(CHUNK):
                call(n)
                n += 1
            mine.append((perf() - t0) / CHUNK)
        with lock:
            samples.extend(mine)

    pool = [threading.Thread(target=run, args=(w,)) for w in range(threads)]
    began = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    LAST_RATE[0] = threads * chunks * CHUNK / (time.perf_counter() - began)
    return statistics.median(samples)


def spool_record_ns(url: str, directory: str, chunks: int, threads: int) -> float:
    client = meterstream.MeterClient(
        api_key=KEY,
        api_base=url,
        stream_base=url,
        spool_path=os.path.join(directory, f"record-{threads}.db"),
        flush_interval=3600,
    )
    record = client.record
    try:
        return chunk_medians(
            lambda n: record("bench_api", customer="cus_bench", identifier=f"r{n}"),
            chunks,
            threads,
        )
    finally:
        client.shutdown(0)


def memory_record_ns(chunks: int) -> float:
    client = meterstream.MeterClient(exporter="none", max_queue_size=1 << 30)
    record = client.record
    try:
        return chunk_medians(
            lambda n: record("bench_api", customer="cus_bench", identifier=f"r{n}"), chunks, 1
        )
    finally:
        client.shutdown(30)  # the "none" exporter takes what the timed part left


def bare_insert_ns(directory: str, chunks: int) -> float:
    db = sqlite3.connect(
        os.path.join(directory, "bare.db"), isolation_level=None, check_same_thread=False
    )
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE pending (seq INTEGER PRIMARY KEY, event_name TEXT, customer TEXT, "
        "value TEXT, ts REAL, identifier TEXT, dimensions TEXT)"
    )
    execute = db.execute
    now = time.time

    def insert(n: int) -> None:
        execute("BEGIN")
        execute(
            "INSERT INTO pending (event_name, customer, value, ts, identifier, dimensions) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            ("bench_api", "cus_bench", 1, now(), f"r{n}", None),
        )
        execute("COMMIT")

    try:
        return chunk_medians(insert, chunks, 1)
    finally:
        db.close()


def end_to_end(url: str, directory: str, events: int, producers: int) -> float:
    client = meterstream.MeterClient(
        api_key=KEY,
        api_base=url,
        stream_base=url,
        spool_path=os.path.join(directory, f"end-to-end-{producers}.db"),
    )
    record = client.record
    each = events // producers
    events = each * producers

    def produce(worker: int) -> None:
        for n in range(each):
            record("bench_api", customer="cus_bench", identifier=f"e{worker}-{n}")

    pool = [threading.Thread(target=produce, args=(w,)) for w in range(producers)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert client.flush(600), f"the spool did not flush: {client.stats()}"
    elapsed = time.perf_counter() - started
    stats = client.stats()
    client.shutdown(5)
    assert stats["sent"] == events, stats
    return events / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {}
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-spool-") as directory:
        emulator = Emulator.spawn(auto_create_meters=True)
        try:
            emulator.set_faults(hang=True)
            results["record_spool_1_thread_ns"] = spool_record_ns(
                emulator.url, directory, args.chunks, 1
            )
            results["record_spool_1_thread_per_s"] = LAST_RATE[0]
            results["record_spool_8_threads_ns"] = spool_record_ns(
                emulator.url, directory, max(args.chunks // 8, 50), 8
            )
            results["record_spool_8_threads_per_s"] = LAST_RATE[0]
            emulator.set_faults(hang=False)
            results["record_no_spool_ns"] = memory_record_ns(args.chunks)
            results["bare_sqlite_insert_commit_ns"] = bare_insert_ns(directory, args.chunks)
            emulator.reset()
            results["end_to_end_events_per_s"] = end_to_end(emulator.url, directory, args.events, 1)
            emulator.reset()
            results["end_to_end_8_producers_events_per_s"] = end_to_end(
                emulator.url, directory, args.events, 8
            )
        finally:
            emulator.stop()

    floor = results["bare_sqlite_insert_commit_ns"]
    rows = [
        ("record(), spool, 1 thread", results["record_spool_1_thread_ns"]),
        ("record(), spool, 8 threads", results["record_spool_8_threads_ns"]),
        ("record(), no spool (exporter none)", results["record_no_spool_ns"]),
        ("bare sqlite3 insert+commit (WAL, NORMAL)", floor),
    ]
    print(f"{'median per call':<42} {'µs':>8} {'× bare insert':>14}")
    for name, ns in rows:
        print(f"{name:<42} {ns / 1000:>8.2f} {ns / floor:>14.2f}")
    print(f"{'durable records/s':<42} {'':>8} {'':>14}")
    for name, key in (
        ("1 thread", "record_spool_1_thread_per_s"),
        ("8 threads together", "record_spool_8_threads_per_s"),
    ):
        print(f"{name:<42} {results[key]:>8,.0f}")
    print(f"{'durable events/s end to end':<42}   ({args.events:,} events)")
    for name, key in (
        ("1 producer thread", "end_to_end_events_per_s"),
        ("8 producer threads", "end_to_end_8_producers_events_per_s"),
    ):
        print(f"{name:<42} {results[key]:>8,.0f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
