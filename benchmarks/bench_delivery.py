"""Delivery throughput: meterstream against three ways of calling Stripe by hand.

All four run in one go against the same local emulator, spawned in its own
process (so the client under test has this process to itself):

  meterstream   @meter-decorated calls from first record to flush() returning
  (a)           stripe-python, one meter event per request
  (b)           stripe-python, 100-event batches, as its official example does
                (a session, then meter_event_stream.create per batch)
  (c)           a hand-written httpx loop of 100-event batches

It also measures what a decorated call costs while the flusher is busy
sending (the emulator answers after 20 ms, so a request is always in flight).

    python benchmarks/bench_delivery.py [--events 200000] [--single 2000] [--proxy URL]
        [--json PATH]

``--json`` also writes the throughputs (events/s, by run) for
benchmarks/plot_performance.py.

With ``--proxy``, meterstream's own runs go through that HTTP proxy (start
one in another process, e.g. ``python benchmarks/forward_proxy.py``).

Under fire (issue #13), with the default settings:

    python benchmarks/bench_delivery.py --faults [--events 200000]
        meterstream fault-free, then with 30% of stream requests answered 500
    python benchmarks/bench_delivery.py --mixed [--mixed-events 300000] [--rate 2000]
        events recorded at a steady rate through 30% 500s, 429 bursts (half the
        requests, one second in five) and sessions that expire every second;
        counts what was dropped as queue full and checks the server's tally

A script, not a test.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from typing import Any, Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import httpx

import meterstream
from meterstream.emulator import Emulator

KEY = "sk_test_bench"


def wire(n: int, tag: str) -> dict[str, Any]:
    return {
        "identifier": f"{tag}-{n}",
        "event_name": "bench_api",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "payload": {"stripe_customer_id": f"cus_{n % 10}", "value": "1"},
    }


#: Extra settings for meterstream's clients (--proxy).
EXTRA: dict[str, Any] = {}


def bench_meterstream(url: str, events: int) -> float:
    client = meterstream.MeterClient(
        api_key=KEY, api_base=url, stream_base=url, max_queue_size=max(events, 100_000), **EXTRA
    )

    @client.meter("bench_api")
    def handler() -> None:
        return None

    started = time.perf_counter()
    with meterstream.customer("cus_bench"):
        for _ in range(events):
            handler()
    assert client.flush(120), "meterstream did not flush"
    elapsed = time.perf_counter() - started
    stats = client.stats()
    assert stats["sent"] == events, stats
    client.shutdown(5)
    return events / elapsed


def bench_faults(events: int) -> None:
    """Throughput fault-free vs 30% random 500s, each against a fresh emulator."""
    rates = {}
    for name, faults in (("fault-free", {}), ("30% random 500s", {"fail_500": 0.3})):
        emulator = Emulator.spawn(auto_create_meters=True)
        try:
            if faults:
                emulator.set_faults(**faults)
            rates[name] = bench_meterstream(emulator.url, events)
            stored = _stored_count(emulator.snapshot(), "bench_api")
        finally:
            emulator.stop()
        print(
            f"meterstream, {name:<18} {rates[name]:>10,.0f} events/s  "
            f"({events:,} events, {stored:,} stored)"
        )
    ratio = rates["30% random 500s"] / rates["fault-free"]
    print(f"30% random 500s / fault-free: {ratio:.2f}")


def bench_mixed(events: int, rate: float) -> int:
    """The mixed-fault run; returns 1 when an event was lost, duplicated or dropped."""
    import threading

    emulator = Emulator.spawn(auto_create_meters=True, session_ttl=1.0)
    try:
        emulator.set_faults(fail_500=0.3)
        client = meterstream.MeterClient(
            api_key=KEY, api_base=emulator.url, stream_base=emulator.url
        )
        stop = threading.Event()

        def bursts() -> None:
            # 429 bursts: half the requests refused, one second in five.
            while not stop.wait(4.0):
                emulator.set_faults(fail_429=0.5)
                if stop.wait(1.0):
                    break
                emulator.set_faults(fail_429=0.0)

        burster = threading.Thread(target=bursts, daemon=True)
        burster.start()
        started = time.perf_counter()
        tick = 0.01
        per_tick = rate * tick
        done = 0
        with meterstream.customer("cus_mixed"):
            while done < events:
                due = started + (done + per_tick) / rate
                for _ in range(int(min(per_tick, events - done))):
                    client.record("bench_api", 1)
                done += int(min(per_tick, events - done))
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
        recorded_in = time.perf_counter() - started
        stop.set()
        burster.join()
        emulator.set_faults(fail_429=0.0)
        flushed = client.flush(300)
        stats = client.stats()
        client.shutdown(5)
        snapshot = emulator.snapshot()
    finally:
        emulator.stop()
    stored = _stored_count(snapshot, "bench_api")
    print(
        f"mixed faults: {events:,} events recorded at {rate:,.0f}/s in {recorded_in:.1f}s; "
        f"flushed={flushed}"
    )
    print(
        f"  sent {stats['sent']:,}  dropped as queue full {stats['dropped_queue_full']:,}  "
        f"failed {stats['failed']:,}  retried {stats['retried']:,}  "
        f"sessions opened {stats['sessions_opened']:,}  requests {stats['requests']:,}"
    )
    print(f"  the emulator stored {stored:,} events")
    bad = stats["dropped_queue_full"] or stats["sent"] != events or stored != events
    return 1 if bad else 0


def _stored_count(snapshot: dict[str, Any], event_name: str) -> int:
    """Events the emulator stored (each identifier once) under *event_name*."""
    return sum(int(t["count"]) for t in snapshot["totals"] if t["event_name"] == event_name)


def stripe_client(url: str) -> Any:
    import stripe

    return stripe.StripeClient(KEY, base_addresses={"api": url, "meter_events": url})


def bench_stripe_single(url: str, events: int) -> float:
    client = stripe_client(url)
    started = time.perf_counter()
    session = client.v2.billing.meter_event_session.create()
    for n in range(events):
        client.v2.billing.meter_event_stream.create(
            {"events": [wire(n, "single")]}, {"api_key": session.authentication_token}
        )
    return events / (time.perf_counter() - started)


def bench_stripe_batches(url: str, events: int) -> float:
    client = stripe_client(url)
    started = time.perf_counter()
    session = client.v2.billing.meter_event_session.create()
    for start in range(0, events, 100):
        batch = [wire(n, "batch") for n in range(start, min(start + 100, events))]
        client.v2.billing.meter_event_stream.create(
            {"events": batch}, {"api_key": session.authentication_token}
        )
    return events / (time.perf_counter() - started)


def bench_httpx_loop(url: str, events: int) -> float:
    started = time.perf_counter()
    with httpx.Client(base_url=url) as http:
        token = http.post(
            "/v2/billing/meter_event_session", headers={"Authorization": f"Bearer {KEY}"}
        ).json()["authentication_token"]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        for start in range(0, events, 100):
            batch = [wire(n, "httpx") for n in range(start, min(start + 100, events))]
            response = http.post(
                "/v2/billing/meter_event_stream",
                content=json.dumps({"events": batch}),
                headers=headers,
            )
            response.raise_for_status()
    return events / (time.perf_counter() - started)


def bench_call_cost_while_sending(url: str, calls: int) -> tuple[float, float]:
    """Median ns added per decorated call: idle flusher vs a request in flight."""
    client = meterstream.MeterClient(
        api_key=KEY,
        api_base=url,
        stream_base=url,
        max_queue_size=10**7,
        flush_interval=3600,
        **EXTRA,
    )

    def empty() -> None:
        return None

    decorated = client.meter("bench_api")(empty)
    chunk = 50  # fewer than a batch: the flusher is not woken by the chunk itself

    def median_added() -> float:
        samples = []
        for _ in range(calls // chunk):
            t0 = time.perf_counter_ns()
            for _ in range(chunk):
                empty()
            t1 = time.perf_counter_ns()
            for _ in range(chunk):
                decorated()
            t2 = time.perf_counter_ns()
            samples.append(((t2 - t1) - (t1 - t0)) / chunk)
        return statistics.median(samples)

    with meterstream.customer("cus_bench"):
        idle = median_added()
        client.flush(60)
        # Keep the flusher busy: a long queue and a slow server (set by caller).
        for _ in range(20_000):
            decorated()
        client._buffer.wake.set()
        busy = median_added()
    client.shutdown(0)
    return idle, busy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--single", type=int, default=2_000, help="events for (a)")
    parser.add_argument("--calls", type=int, default=200_000, help="calls for the cost probe")
    parser.add_argument("--faults", action="store_true", help="fault-free vs 30%% random 500s")
    parser.add_argument("--mixed", action="store_true", help="the mixed-fault run")
    parser.add_argument("--mixed-events", type=int, default=300_000)
    parser.add_argument("--rate", type=float, default=2_000.0, help="events/s in --mixed")
    parser.add_argument("--proxy", help="send meterstream's batches through this HTTP proxy")
    parser.add_argument(
        "--only-meterstream", action="store_true", help="skip the by-hand runs (a), (b), (c)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the throughputs as JSON")
    args = parser.parse_args(argv)
    if args.proxy:
        EXTRA["proxy"] = args.proxy
    gc.collect()
    if args.faults or args.mixed:
        if args.faults:
            bench_faults(args.events)
        return bench_mixed(args.mixed_events, args.rate) if args.mixed else 0
    emulator = Emulator.spawn(auto_create_meters=True)
    try:
        url = emulator.url
        results: dict[str, float] = {}
        runs: list[tuple[str, Callable[[str, int], float], int]] = [
            ("meterstream (@meter -> flush)", bench_meterstream, args.events),
            ("(a) stripe-python, 1 event/request", bench_stripe_single, args.single),
            ("(b) stripe-python, 100-event batches", bench_stripe_batches, args.events),
            ("(c) httpx loop, 100-event batches", bench_httpx_loop, args.events),
        ]
        for name, run, n in runs[:1] if args.only_meterstream else runs:
            results[name] = run(url, n)
            print(f"{name:<40} {results[name]:>12,.0f} events/s  ({n:,} events)")
        if args.only_meterstream:
            runs = []
        ms = results[runs[0][0]] if runs else 0.0
        if runs:
            print(f"meterstream vs (a): {ms / results[runs[1][0]]:,.0f}x")
            print(f"meterstream vs (b): {ms / results[runs[2][0]]:,.2f}x")
            print(f"meterstream vs (c): {ms / results[runs[3][0]]:,.2f}x")
    finally:
        emulator.stop()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"events_per_second": results}, out)
    emulator = Emulator.spawn(auto_create_meters=True)
    try:
        emulator.set_faults(latency_ms=20)
        idle, busy = bench_call_cost_while_sending(emulator.url, args.calls)
        print(
            f"decorated call, added cost (median): flusher idle {idle:.0f} ns, "
            f"flusher sending {busy:.0f} ns"
        )
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
