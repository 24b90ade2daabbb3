"""What OpenTelemetry adds to a decorated call: no SDK, SDK idle, SDK recording a span.

Each case runs in a fresh interpreter (OpenTelemetry has one global provider
per process). Median nanoseconds added per @meter call over an empty function,
memory exporter, as in bench_record.py.

    python benchmarks/bench_otel.py

A script, not a test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CASE = textwrap.dedent(
    """
    import statistics, time, sys
    import meterstream
    mode = sys.argv[1]
    if mode != "none":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        trace.set_tracer_provider(TracerProvider())
    client = meterstream.configure(exporter="memory", flush_interval=3600)
    def empty():
        return None
    decorated = meterstream.meter("bench")(empty)
    perf = time.perf_counter_ns
    def run():
        samples = []
        for _ in range(3000):
            t0 = perf()
            for _ in range(50):
                empty()
            t1 = perf()
            for _ in range(50):
                decorated()
            t2 = perf()
            samples.append(((t2 - t1) - (t1 - t0)) / 50)
            client.flush(10)
            client.exporter.clear()
        return statistics.median(samples)
    with meterstream.customer("cus_bench"):
        if mode == "span":
            from opentelemetry import trace
            with trace.get_tracer("bench").start_as_current_span("request"):
                best = min(run() for _ in range(3))
        else:
            best = min(run() for _ in range(3))
    print(f"{best:.0f}")
    """
)

CASES = {
    "no SDK": "none",
    "SDK installed, no current span": "sdk",
    "SDK installed, inside a recording span": "span",
}


def main() -> int:
    for label, mode in CASES.items():
        out = subprocess.run(
            [sys.executable, "-c", CASE, mode], capture_output=True, text=True, check=True
        ).stdout.strip()
        print(f"{label:<40} {out:>6} ns added per decorated call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
