"""Plot the performance numbers: docs/img/performance.svg.

Left: what a call costs the caller, meterstream's recording beside what
people already put on their hot path (a log line, an OpenTelemetry metric
increment or span), measured the same way as bench_record.py. Right: delivery
throughput, meterstream beside the ways of calling Stripe by hand
(bench_delivery.py).

    python benchmarks/plot_performance.py            # quick runs of both benchmarks, then the plot
    python benchmarks/plot_performance.py --record R.json --delivery D.json

The JSON files are what ``bench_record.py --json`` and ``bench_delivery.py
--json`` write; without them this script runs quick versions of both itself.
Needs matplotlib (``pip install -e '.[docs]'``).

A script, not a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "src"))
sys.path.insert(0, HERE)

from bench_record import median_added_ns  # noqa: E402

import meterstream  # noqa: E402

OUTPUT = os.path.join(ROOT, "docs", "img", "performance.svg")


def run_benchmark(script: str, args: list[str]) -> dict[str, Any]:
    """Run benchmarks/<script> with ``--json`` and return what it wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "results.json")
        subprocess.run(
            [sys.executable, os.path.join(HERE, script), *args, "--json", path], check=True
        )
        with open(path, encoding="utf-8") as results:
            loaded: dict[str, Any] = json.load(results)
            return loaded


def peer_costs(chunks: int, repeat: int) -> dict[str, float]:
    """Median ns added per call by what else people put on a hot path."""
    client = meterstream.MeterClient(exporter="memory", flush_interval=3600)

    def empty() -> None:
        return None

    logger = logging.getLogger("bench.peer")
    logger.addHandler(logging.NullHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    peers: dict[str, Callable[[], object]] = {
        "logging: logger.info(...)": lambda: logger.info("search for %s", "cus_bench"),
    }
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:  # pragma: no cover - the otel extra is not installed
        print("opentelemetry-sdk not installed: no OpenTelemetry peers")
    else:
        counter = MeterProvider().get_meter("bench").create_counter("searches")
        tracer = TracerProvider().get_tracer("bench")
        attributes = {"customer": "cus_bench"}

        def span() -> None:
            with tracer.start_as_current_span("search"):
                pass

        peers["OpenTelemetry SDK: counter.add(1)"] = lambda: counter.add(1, attributes)
        peers["OpenTelemetry SDK: a span"] = span
    costs = {
        name: min(median_added_ns(empty, fn, client, chunks) for _ in range(repeat))
        for name, fn in peers.items()
    }
    client.shutdown(1)
    for name, cost in costs.items():
        print(f"  {name:<34} {cost:8.0f} ns")
    return costs


def plot(recording: dict[str, float], delivery: dict[str, float], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "meterstream"  # stable ids: diffs show only the numbers
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6))
    names = list(recording)
    colors = ["#4051b5" if "meter" in n or "record" in n else "#9e9e9e" for n in names]
    left.barh(names, [recording[n] for n in names], color=colors)
    left.invert_yaxis()
    left.set_xlim(0, max(recording.values()) * 1.2)
    left.set_xlabel("ns added per call (median; lower is better)")
    left.set_title("Recording: cost to the caller")
    for y, name in enumerate(names):
        left.text(recording[name], y, f" {recording[name]:,.0f}", va="center", fontsize=8)

    runs = list(delivery)
    colors = ["#4051b5" if n.startswith("meterstream") else "#9e9e9e" for n in runs]
    right.barh(runs, [delivery[n] for n in runs], color=colors)
    right.invert_yaxis()
    right.set_xscale("log")
    right.set_xlim(min(delivery.values()) / 2, max(delivery.values()) * 4)
    right.set_xlabel("events/s (log scale; higher is better)")
    right.set_title("Delivery throughput to the local emulator")
    for y, name in enumerate(runs):
        right.text(delivery[name], y, f" {delivery[name]:,.0f}", va="center", fontsize=8)
    fig.suptitle(
        f"meterstream {meterstream.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs",
        fontsize=9,
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # No timestamp in the file: the same numbers give the same SVG.
    fig.savefig(path, metadata={"Date": None} if path.endswith(".svg") else None)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", metavar="JSON", help="bench_record.py --json output")
    parser.add_argument("--delivery", metavar="JSON", help="bench_delivery.py --json output")
    parser.add_argument("--chunks", type=int, default=1000, help="chunks for the quick runs")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--events", type=int, default=20_000, help="events for the quick run")
    parser.add_argument("--output", default=OUTPUT)
    args = parser.parse_args(argv)
    quick = ["--chunks", str(args.chunks), "--repeat", str(args.repeat)]
    if args.record:
        with open(args.record, encoding="utf-8") as results:
            recorded = json.load(results)
    else:
        recorded = run_benchmark("bench_record.py", quick)
    if args.delivery:
        with open(args.delivery, encoding="utf-8") as results:
            delivered = json.load(results)
    else:
        delivered = run_benchmark(
            "bench_delivery.py",
            ["--events", str(args.events), "--single", "500", "--calls", "20000"],
        )
    recording = dict(recorded["ns_per_call"])
    recording.update(peer_costs(args.chunks, args.repeat))
    plot(recording, delivered["events_per_second"], args.output)
    print(f"wrote {os.path.relpath(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
