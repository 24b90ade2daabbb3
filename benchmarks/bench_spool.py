"""The durable spool: what record() costs with spool_path, and durable events/s end to end.

All in one run:

  record(), journal, 1 thread     median ns per call, spool_sync=normal
  record(), journal, 8 threads    the same, eight threads recording at once (each
                                  thread's own calls), and their records/s together
  record(), journal, full, 8 thr  spool_sync="full": an fdatasync shared by the
                                  threads that wrote meanwhile (group commit), with
                                  the records per sync and an fdatasync timed right
                                  after it (the floor: 8 / that time)
  record(), no spool              the in-memory record path, measured in turns with
                                  the journal's one-thread case (5 rounds, the median
                                  of their medians); both also without an identifier
                                  given (a generated one, the default)
  bare mmap store                 a framed record (marshal, CRC-32, 16-byte header,
                                  one precompiled struct store)
                                  copied into a MAP_SHARED mapping under a lock:
                                  the floor the journal stands on
  bare sqlite3 insert+commit      one row a transaction, WAL, synchronous=NORMAL:
                                  the floor the previous release's spool stood on
  bare store + fdatasync          one store into a written shared mapping and an
                                  fdatasync: what spool_sync="full" waits for
  previous release                with --base-src: the same record() and end-to-end
                                  cases against that checkout's SQLite spool, in a
                                  subprocess of this run
  end to end                      events/s from the first record() to flush()
                                  returning, delivered to the emulator (spawned in
                                  its own process): through the journal, and in
                                  memory without a spool, and through the journal
                                  with spool_history_days=0 (no accepted history:
                                  what keeping it costs); from one producer thread,
                                  and from eight; 5 rounds with the three in turns,
                                  each on a new spool file: the medians, and the
                                  median of each round's ratio to memory

Per-call costs are medians over chunks of 50 calls. While record() is timed,
the emulator hangs every request, so delivery takes a few batches and waits:
what is measured is the caller's cost.

    python benchmarks/bench_spool.py [--chunks 2000] [--events 100000]
        [--base-src CHECKOUT/src] [--json PATH]

A script, not a test: the numbers go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import marshal
import mmap
import os
import platform
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from typing import Any, Callable

if "--base-only" not in sys.argv:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import meterstream
from meterstream.emulator import Emulator

KEY = "sk_test_bench"
CHUNK = 50
#: Rounds of the one-thread record() cases, journal and in memory in turn.
ROUNDS = 5


#: Calls per second, all threads together, of the last chunk_medians run.
LAST_RATE: list[float] = [0.0]
#: Records per fdatasync of the last spool_record_ns run with spool_sync="full" (0: unknown).
LAST_PER_SYNC: list[float] = [0.0]


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


def recorder(record: Callable[..., object], named: bool) -> Callable[[int], object]:
    """One record() call: with an identifier given (as the targets are measured), or without
    (a generated one: the default)."""
    if named:
        return lambda n: record("bench_api", customer="cus_bench", identifier=f"r{n}")
    return lambda n: record("bench_api", customer="cus_bench")


def spool_record_ns(
    url: str, directory: str, chunks: int, threads: int, sync: str, named: bool = True
) -> float:
    client = meterstream.MeterClient(
        api_key=KEY,
        api_base=url,
        stream_base=url,
        spool_path=os.path.join(directory, f"record-{threads}-{sync}-{named}.db"),
        spool_sync=sync,
        flush_interval=3600,
    )
    record = client.record
    journal = getattr(client.spool, "journal", None)
    try:
        ns = chunk_medians(recorder(record, named), chunks, threads)
        syncs = getattr(journal, "group_syncs", 0)
        LAST_PER_SYNC[0] = threads * chunks * CHUNK / syncs if syncs else 0.0
        return ns
    finally:
        client.shutdown(0)


def memory_record_ns(chunks: int, named: bool = True) -> float:
    client = meterstream.MeterClient(exporter="none", max_queue_size=1 << 30)
    record = client.record
    try:
        return chunk_medians(recorder(record, named), chunks, 1)
    finally:
        client.shutdown(30)  # the "none" exporter takes what the timed part left


def bare_mmap_ns(directory: str, chunks: int) -> float:
    """A framed record stored into a shared file mapping: the journal's floor.

    What the journal's append does and nothing else: the recorded tuple
    (made, with time.time() and an identifier, as record() makes it)
    marshalled, its CRC-32, and header and payload written by one struct
    packer made once per length, under an uncontended lock.
    """
    size = 256 << 20
    with open(os.path.join(directory, "bare.seg"), "w+b") as f:
        os.posix_fallocate(f.fileno(), 0, size)
        mm = mmap.mmap(f.fileno(), size, mmap.MAP_SHARED)
    packers: dict[int, Any] = {}
    dumps, crc32, now = marshal.dumps, zlib.crc32, time.time
    lock = threading.Lock()
    state = [64, 0]

    def store(n: int) -> None:
        payload = dumps(("bench_api", "cus_bench", 1, now(), f"r{n}", None), 4)
        length = len(payload)
        pack = packers.get(length)
        if pack is None:
            pack = packers[length] = struct.Struct(f"<IIQ{length}s").pack_into
        lock.acquire()
        try:
            offset, seq = state[0], state[1] + 1
            if offset + 16 + length > size:
                offset = 64
            pack(mm, offset, length, crc32(payload, seq), seq, payload)
            state[0], state[1] = offset + 16 + ((length + 7) & ~7), seq
        finally:
            lock.release()

    try:
        return chunk_medians(store, chunks, 1)
    finally:
        mm.close()


def bare_sync_ns(directory: str, chunks: int) -> float:
    """A store into a written (not sparse) shared mapping, then fdatasync: the
    floor of one spool_sync="full" record alone, and so of a group of them."""
    size = 16 << 20
    path = os.path.join(directory, "bare-sync.seg")
    with open(path, "w+b") as f:
        f.write(b"\x00" * size)
        f.flush()
        os.fsync(f.fileno())
        fd = os.dup(f.fileno())
    mm = mmap.mmap(fd, size, mmap.MAP_SHARED)
    state = [64]

    def store(n: int) -> None:
        offset = state[0] if state[0] + 128 < size else 64
        mm[offset : offset + 100] = b"x" * 100
        os.fdatasync(fd)
        state[0] = offset + 104

    try:
        return chunk_medians(store, chunks, 1)
    finally:
        mm.close()
        os.close(fd)


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


def end_to_end(
    url: str, directory: str, events: int, producers: int, spool: bool, history: bool = True
) -> float:
    settings: dict[str, Any] = {"api_key": KEY, "api_base": url, "stream_base": url}
    if spool:
        settings["spool_path"] = os.path.join(
            directory, f"end-to-end-{producers}{'' if history else '-no-history'}.db"
        )
        if not history:
            settings["spool_history_days"] = 0
    else:
        settings["max_queue_size"] = events + 1
    client = meterstream.MeterClient(**settings)
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


def spool_cases(
    url: str, directory: str, emulator: Any, chunks: int, events: int
) -> dict[str, Any]:
    """The cases that go through spool_path: this checkout's, or (--base-only) another's."""
    results: dict[str, Any] = {}
    emulator.set_faults(hang=True)
    # The one-thread cases beside the in-memory path, taking turns (ROUNDS rounds,
    # the median of their medians): the ratio the target is set on, with as
    # little of the machine's drift between its two sides as one run allows.
    per_round = max(chunks // ROUNDS, 50)
    for named, suffix in ((True, ""), (False, "_default_id")):
        spool, memory = [], []
        for _ in range(ROUNDS):
            memory.append(memory_record_ns(per_round, named))
            spool.append(spool_record_ns(url, directory, per_round, 1, "normal", named))
        results[f"record_spool_1_thread{suffix}_ns"] = statistics.median(spool)
        results[f"record_no_spool{suffix}_ns"] = statistics.median(memory)
    results["record_spool_1_thread_per_s"] = LAST_RATE[0]
    results["record_spool_8_threads_ns"] = spool_record_ns(
        url, directory, max(chunks // 8, 50), 8, "normal"
    )
    results["record_spool_8_threads_per_s"] = LAST_RATE[0]
    results["record_spool_full_8_threads_ns"] = spool_record_ns(
        url, directory, max(chunks // 40, 10), 8, "full"
    )
    results["record_spool_full_8_threads_per_s"] = LAST_RATE[0]
    results["record_spool_full_8_threads_per_sync"] = LAST_PER_SYNC[0]
    # One store + fdatasync in the same directory, right after: the floor's sync time.
    results["fdatasync_beside_full_ns"] = bare_sync_ns(directory, max(chunks // 40, 10))
    emulator.set_faults(hang=False)
    return results


#: The end-to-end cases: (results key, spool, history).
KINDS = {
    "memory": (False, True),
    "spool": (True, True),
    "spool_no_history": (True, False),
}


def end_to_end_cases(
    url: str, directory: str, emulator: Any, events: int, kinds: tuple[str, ...]
) -> dict[str, Any]:
    """Each kind's events/s end to end, ROUNDS rounds with the kinds in turns
    (each run on a new spool file), from 1 producer and from 8: the median,
    and for the spool kinds the median of their ratio to memory's run of the
    same round (when memory is among the kinds)."""
    results: dict[str, Any] = {}
    for producers in (1, 8):
        runs: dict[str, list[float]] = {kind: [] for kind in kinds}
        for round_ in range(ROUNDS):
            for kind in kinds:
                spool, history = KINDS[kind]
                emulator.reset()
                place = os.path.join(directory, f"e2e-{producers}-{round_}-{kind}")
                os.makedirs(place)
                runs[kind].append(end_to_end(url, place, events, producers, spool, history))
        for kind, rates in runs.items():
            results[f"end_to_end_{kind}_{producers}_events_per_s"] = statistics.median(rates)
            results[f"end_to_end_{kind}_{producers}_runs"] = rates
            if kind != "memory" and "memory" in runs:
                ratios = [a / b for a, b in zip(rates, runs["memory"])]
                results[f"end_to_end_{kind}_{producers}_ratio"] = statistics.median(ratios)
    return results


def base_cases(base_src: str, chunks: int, events: int) -> dict[str, Any]:
    """spool_cases() run by another checkout's meterstream, in a subprocess."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--base-only",
            "--chunks",
            str(chunks),
            "--events",
            str(events),
            "--json",
            out.name,
        ]
        env = {**os.environ, "PYTHONPATH": base_src}
        subprocess.run(command, env=env, check=True)
        with open(out.name) as f:
            loaded: dict[str, Any] = json.load(f)
    return loaded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--base-src", help="the src directory of the previous release's checkout")
    parser.add_argument("--base-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {}
    if args.base_only:
        with tempfile.TemporaryDirectory(prefix="bench-spool-base-") as directory:
            emulator = Emulator.spawn(auto_create_meters=True)
            try:
                results = spool_cases(emulator.url, directory, emulator, args.chunks, args.events)
                results.update(
                    end_to_end_cases(emulator.url, directory, emulator, args.events, ("spool",))
                )
            finally:
                emulator.stop()
        with open(args.json, "w") as out:
            json.dump(results, out)
        return 0
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    base: dict[str, Any] = {}
    if args.base_src:
        base = base_cases(args.base_src, args.chunks, args.events)
    with tempfile.TemporaryDirectory(prefix="bench-spool-") as directory:
        emulator = Emulator.spawn(auto_create_meters=True)
        try:
            results = spool_cases(emulator.url, directory, emulator, args.chunks, args.events)
            results["bare_mmap_store_ns"] = bare_mmap_ns(directory, args.chunks)
            results["bare_sqlite_insert_commit_ns"] = bare_insert_ns(directory, args.chunks)
            results["bare_fdatasync_ns"] = bare_sync_ns(directory, max(args.chunks // 40, 10))
            # The journal without the accepted history too: what the history costs.
            results.update(
                end_to_end_cases(emulator.url, directory, emulator, args.events, tuple(KINDS))
            )
        finally:
            emulator.stop()
    results["base"] = base
    report(results, args.events)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    return 0


def report(results: dict[str, Any], events: int) -> None:
    base = results["base"]
    memory = results["record_no_spool_ns"]
    print(f"{'median per call':<46} {'µs':>8} {'× no spool':>11} {'previous':>9}")
    plain = results["record_no_spool_default_id_ns"]
    for name, key, beside in (
        ("record(), journal, 1 thread", "record_spool_1_thread_ns", memory),
        ("record(), journal, 8 threads", "record_spool_8_threads_ns", memory),
        ('record(), journal, spool_sync="full", 8 thr', "record_spool_full_8_threads_ns", memory),
        ("record(), no spool", "record_no_spool_ns", memory),
        ("record(), journal, no identifier given", "record_spool_1_thread_default_id_ns", plain),
        ("record(), no spool, no identifier given", "record_no_spool_default_id_ns", plain),
        ("bare mmap store (the journal's floor)", "bare_mmap_store_ns", memory),
        ("bare sqlite3 insert+commit (WAL, NORMAL)", "bare_sqlite_insert_commit_ns", memory),
        ("bare store + fdatasync (spool_sync=full's floor)", "bare_fdatasync_ns", memory),
    ):
        ns = results[key]
        before = f"{base[key] / 1000:>9.2f}" if key in base else f"{'':>9}"
        print(f"{name:<46} {ns / 1000:>8.2f} {ns / beside:>11.2f} {before}")
    print(f"{'records/s, all threads together':<46} {'':>8} {'':>11} {'previous':>9}")
    for name, key in (
        ("journal, 8 threads", "record_spool_8_threads_per_s"),
        ('journal, spool_sync="full", 8 threads', "record_spool_full_8_threads_per_s"),
    ):
        before = f"{base[key]:>9,.0f}" if key in base else ""
        ratio = f"  ({results[key] / base[key]:.1f}× previous)" if key in base else ""
        print(f"{name:<46} {results[key]:>8,.0f} {'':>11} {before}{ratio}")
    per_sync = results.get("record_spool_full_8_threads_per_sync", 0.0)
    t_sync = results["fdatasync_beside_full_ns"]
    print(
        f'spool_sync="full", 8 threads: {per_sync:.1f} records per fdatasync; one store + '
        f"fdatasync beside it {t_sync / 1000:.0f} µs, so at most 8 / t_sync = "
        f"{8e9 / t_sync:,.0f} records/s with 8 threads each waiting for its own"
    )
    if "fdatasync_beside_full_ns" in base:
        print(
            f"  previous release's run: fdatasync {base['fdatasync_beside_full_ns'] / 1000:.0f} µs"
            f" (floor {8e9 / base['fdatasync_beside_full_ns']:,.0f}/s); 10× its figure would be "
            f"{10 * base['record_spool_full_8_threads_per_s']:,.0f}/s"
        )
    print(f"events/s end to end ({events:,} events)")
    for producers in (1, 8):
        spool = results[f"end_to_end_spool_{producers}_events_per_s"]
        mem = results[f"end_to_end_memory_{producers}_events_per_s"]
        key = f"end_to_end_spool_{producers}_events_per_s"
        before = f", previous release {base[key]:,.0f}" if key in base else ""
        bare = results[f"end_to_end_spool_no_history_{producers}_events_per_s"]
        ratio = results[f"end_to_end_spool_{producers}_ratio"]
        bare_ratio = results[f"end_to_end_spool_no_history_{producers}_ratio"]
        print(
            f"  {producers} producer(s): journal {spool:,.0f}, in memory {mem:,.0f} "
            f"({ratio:.2f}×){before}; journal with spool_history_days=0 "
            f"{bare:,.0f} ({bare_ratio:.2f}×)"
        )
        runs = results[f"end_to_end_spool_{producers}_runs"]
        print(
            "    each round, journal ÷ memory: "
            + ", ".join(
                f"{a / b:.2f}" for a, b in zip(runs, results[f"end_to_end_memory_{producers}_runs"])
            )
        )


if __name__ == "__main__":
    raise SystemExit(main())
