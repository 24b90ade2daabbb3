"""What the ASGI middleware and a decorator cost a FastAPI app, in requests per second.

Each case serves the same trivial endpoint (``GET /search`` answering a small
JSON body) under uvicorn (one worker, httptools) in a subprocess, while a
load generator in another process keeps N keep-alive connections busy for a
fixed time. Every request carries an ``X-Customer-Id`` header (one of 10
customers), whatever the case:

- ``plain``: no meterstream at all;
- ``middleware``: ``MeterstreamMiddleware`` with the header resolver;
- ``middleware+meter``: that, and ``@meterstream.meter`` on the endpoint;
- ``middleware+meter+request_event``: that, and one request event per response.

Metered cases deliver for real, to a local emulator in a third process
(``--exporter none``: record, deliver nothing). All four servers run for
the whole benchmark and are loaded one at a time, in slices of
``--seconds`` taken in turn (``--rounds`` per case, at most 15 s of load per
case by default), so that noise from other processes falls on every case
alike. On Linux with two CPUs or more, the servers are pinned to one CPU and
the load generator and the emulator to the others. The report gives the
median and best slice per case and what each lost against ``plain`` (and
the median of the per-round losses, "paired", which the machine's slow drifts
disturb least), and
the server's CPU time per request (Linux: from ``/proc``), which a noisy
machine disturbs far less than requests per second; for a single-worker
server that is CPU-bound, the throughput lost is ``1 - cpu(plain) / cpu(case)``.

    python benchmarks/bench_middleware.py [--seconds 1] [--rounds 12] [--connections 32]
        [--cases middleware+meter] [--exporter none]
    python benchmarks/bench_middleware.py --instructions [--requests 2000]
        [--cases middleware+meter]

A script, not a test: the numbers go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

CASES = ("plain", "middleware", "middleware+meter", "middleware+meter+request_event")
CUSTOMERS = 10
WARMUP = 0.2  # per slice: connections open, caches warm


# -- the server side (imported by uvicorn in the server process) -------------------


def make_app() -> Any:
    """The app of the case named by ``BENCH_CASE`` (a uvicorn ``--factory``)."""
    from fastapi import FastAPI

    import meterstream
    from meterstream.integrations.asgi import MeterstreamMiddleware, header

    case = os.environ["BENCH_CASE"]
    app = FastAPI()

    async def search() -> dict[str, Any]:
        return {"results": [], "ok": True}

    if case == "plain":
        app.get("/search")(search)
        return app
    options: dict[str, Any] = {"customer_resolver": header("X-Customer-Id")}
    if case.endswith("request_event"):
        options["request_event"] = "api_requests"
    app.add_middleware(MeterstreamMiddleware, **options)
    endpoint = meterstream.meter("ai_search_api")(search) if "meter" in case else search
    app.get("/search")(endpoint)
    return app


# -- the load generator (a separate process) ----------------------------------------


async def _connection(
    port: int,
    requests: list[bytes],
    stop_at: list[float],
    counts: list[int],
    index: int,
    limit: int = 0,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    n = index
    try:
        while time.monotonic() < stop_at[0]:
            if limit:
                if counts[2] >= limit:
                    break
                counts[2] += 1
            writer.write(requests[n % len(requests)])
            n += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            counts[1] += 1
            if time.monotonic() >= stop_at[1]:
                counts[0] += 1
    finally:
        writer.close()


async def _load(port: int, seconds: float, connections: int, limit: int = 0) -> tuple[int, int]:
    requests = [
        (
            f"GET /search?q=shoes HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"X-Customer-Id: cus_{k}\r\n\r\n"
        ).encode()
        for k in range(CUSTOMERS)
    ]
    start = time.monotonic()
    # [end of the run, start of the measured window]; warm-up requests are not counted.
    stop_at = [start + WARMUP + seconds, start + WARMUP]
    counts = [0, 0, 0]  # [in the measured window, in all, sent]
    await asyncio.gather(
        *(_connection(port, requests, stop_at, counts, i, limit) for i in range(connections))
    )
    return counts[0], counts[1]


def load_generator(port: int, seconds: float, connections: int, limit: int = 0) -> None:
    count, total = asyncio.run(_load(port, seconds, connections, limit))
    print(json.dumps({"requests": count, "total": total, "rps": count / seconds}))


# -- the driver ------------------------------------------------------------------------


def pin(cpus: set[int]) -> Any:
    """A preexec_fn pinning a child to *cpus* (Linux), so that the server has a core."""
    if not hasattr(os, "sched_setaffinity") or not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


SERVER_CPUS: set[int] = set()
OTHER_CPUS: set[int] = set()
if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2:
    _cpus = sorted(os.sched_getaffinity(0))
    SERVER_CPUS, OTHER_CPUS = {_cpus[0]}, set(_cpus[1:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.communicate()[0].decode()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # a script, not a test: polling a subprocess's socket
    raise RuntimeError("the server did not start")


def start_server(
    case: str, emulator_url: str, exporter: str, under: tuple[str, ...] = ()
) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    env = {
        **os.environ,
        "BENCH_CASE": case,
        "METERSTREAM_API_KEY": "sk_test_bench",
        "METERSTREAM_API_BASE": emulator_url,
        "METERSTREAM_STREAM_BASE": emulator_url,
        "METERSTREAM_EXPORTER": exporter,
    }
    if under:
        # Full batches only: a server slowed 50-fold by callgrind would
        # otherwise send a short batch every flush_interval.
        env["METERSTREAM_FLUSH_INTERVAL"] = "3600"
    server = subprocess.Popen(
        [
            *under,
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench_middleware:make_app",
            "--app-dir",
            HERE,
            "--port",
            str(port),
            "--http",
            "httptools",
            "--loop",
            "asyncio",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=None if under else pin(SERVER_CPUS),
    )
    wait_listening(port, server, timeout=300 if under else 20)
    return port, server


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGINT)
    try:
        server.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.communicate()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) the process *pid* has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    server: tuple[int, subprocess.Popen[bytes]], seconds: float, connections: int
) -> tuple[float, float]:
    """(requests per second, server CPU microseconds per request) of one slice of load."""
    port, proc = server
    has_proc = os.path.exists(f"/proc/{proc.pid}/stat")
    cpu_before = cpu_seconds(proc.pid) if has_proc else 0.0
    load = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--load-generator",
            str(port),
            "--seconds",
            str(seconds),
            "--connections",
            str(connections),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
        preexec_fn=pin(OTHER_CPUS),
    )
    result = json.loads(load.stdout)
    cpu = (cpu_seconds(proc.pid) - cpu_before) / result["total"] * 1e6 if has_proc else 0.0
    return float(result["rps"]), cpu


def drive(port: int, requests: int, connections: int = 8) -> None:
    """Send exactly *requests* requests to the server on *port*, from another process."""
    subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--load-generator",
            str(port),
            "--seconds",
            "3600",
            "--connections",
            str(connections),
            "--requests",
            str(requests),
        ],
        capture_output=True,
        check=True,
        timeout=3600,
    )


def _wait_stored(emulator: Any, want: int) -> None:
    deadline = time.monotonic() + 600
    while emulator.snapshot()["events_stored"] < want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the emulator has not received {want} events")
        time.sleep(0.2)  # a script, not a test: polling another process


def _count_case(
    case: str, emulator: Any, exporter: str, tmp: str, warmup: int, requests: int
) -> tuple[float, float]:
    """Instructions per request of *case*'s server, under callgrind: (main thread, others)."""
    per_request = {"plain": 0, "middleware": 0, "middleware+meter+request_event": 2}.get(case, 1)
    out = os.path.join(tmp, f"{case}.%p.out")
    under = (
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        "--separate-threads=yes",
        "-q",
    )
    port, server = start_server(case, emulator.url, exporter, under)
    pid = str(server.pid)
    try:
        stored = emulator.snapshot()["events_stored"]
        delivering = exporter == "stripe" and per_request > 0
        drive(port, warmup)
        if delivering:  # every full batch of the warm-up is in, before counting
            _wait_stored(emulator, stored + warmup * per_request // 100 * 100)
        subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
        drive(port, requests)
        if delivering:
            total_events = (warmup + requests) * per_request
            _wait_stored(emulator, stored + total_events // 100 * 100)
        subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
        main = others = 0
        # One dump per thread: "<out>.1-01" is the main thread (the event loop's).
        for name in sorted(os.listdir(tmp)):
            if not name.startswith(os.path.basename(out.replace("%p", pid)) + ".1-"):
                continue
            with open(os.path.join(tmp, name)) as dump:
                summary = next(line for line in dump if line.startswith(("summary:", "totals:")))
            if name.endswith(".1-01"):
                main += int(summary.split()[1])
            else:
                others += int(summary.split()[1])
        return main / requests, others / requests
    finally:
        stop_server(server)


def count_instructions(requests: int, exporter: str, cases: list[str]) -> int:
    """Instructions per request, each case's server under callgrind.

    After a warm-up, counters are zeroed, exactly *requests* requests are
    served and their events delivered (full batches only), and the counters
    are dumped, one file per thread: the instructions of the app, the
    middleware and the decorator on the event loop's thread, and those of the
    delivery threads, in user space (the kernel's share of I/O is not
    counted). Unlike requests per second this does not move with the
    machine's other work.
    """
    import shutil
    import tempfile

    from meterstream.emulator import Emulator

    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("--instructions needs valgrind (callgrind) on the PATH")
        return 2
    warmup = 500
    counts: dict[str, tuple[float, float]] = {}
    emulator = Emulator.spawn(auto_create_meters=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for case in cases:
                counts[case] = _count_case(case, emulator, exporter, tmp, warmup, requests)
    finally:
        emulator.stop()
    print(
        f"Python {platform.python_version()} on {platform.machine()}; uvicorn (1 worker, "
        f"httptools) under callgrind, {requests} requests counted after {warmup}, "
        f"exporter={exporter}"
    )
    print(
        f"  {'case':<32} {'instructions/request':>20} {'lost':>6}  "
        f"{'event loop thread':>17} {'other threads':>13}"
    )
    base = sum(counts["plain"])
    for case in cases:
        main, others = counts[case]
        total = main + others
        print(
            f"  {case:<32} {total:20,.0f} {(1 - base / total) * 100:5.1f}%  "
            f"{main:17,.0f} {others:13,.0f}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per slice")
    parser.add_argument("--rounds", type=int, default=12, help="slices per case")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--exporter",
        choices=("stripe", "none"),
        default="stripe",
        help="stripe: deliver to an emulator process; none: record only, deliver nothing",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let the OS place the server, the load generator and the emulator",
    )
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help="comma-separated cases to load (plain is always one)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per request under callgrind instead (slow, but noise-free)",
    )
    parser.add_argument("--requests", type=int, default=0, help="--instructions: requests counted")
    parser.add_argument("--load-generator", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load_generator:
        load_generator(args.load_generator, args.seconds, args.connections, args.requests)
        return 0

    cases = ["plain", *(c for c in args.cases.split(",") if c != "plain")]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {', '.join(CASES)}")
    if args.instructions:
        return count_instructions(args.requests or 2000, args.exporter, cases)
    if args.no_pin:
        SERVER_CPUS.clear()
        OTHER_CPUS.clear()

    from meterstream.emulator import Emulator

    emulator = Emulator.spawn(auto_create_meters=True)
    if OTHER_CPUS:
        os.sched_setaffinity(emulator.process.pid, OTHER_CPUS)
    results: dict[str, list[float]] = {case: [] for case in cases}
    cpu: dict[str, list[float]] = {case: [] for case in cases}
    servers: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    try:
        # Every server is up for the whole run and loaded one at a time, in
        # short slices taken in turn: a noisy neighbour then hurts every case
        # alike instead of whichever case happened to be running.
        for case in cases:
            servers[case] = start_server(case, emulator.url, args.exporter)
        for case in cases:
            measure(servers[case], 1.0, args.connections)  # warm-up, not counted
        order = list(cases)
        for round_ in range(args.rounds):
            for case in order[round_ % len(order) :] + order[: round_ % len(order)]:
                rps, us = measure(servers[case], args.seconds, args.connections)
                results[case].append(rps)
                cpu[case].append(us)
    finally:
        for _, server in servers.values():
            stop_server(server)
        emulator.stop()
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"uvicorn (1 worker, httptools), {args.connections} keep-alive connections, "
        f"server pinned to CPU {sorted(SERVER_CPUS) or 'any'}, "
        f"{args.rounds} slices of {args.seconds:g} s per case, "
        f"exporter={args.exporter}"
    )
    print(
        f"  {'case':<32} {'req/s':>7} {'lost':>6}  {'best':>7} {'lost':>6}  "
        f"{'paired':>6}  {'CPU/req':>8} {'lost':>6}"
    )
    base = statistics.median(results["plain"])
    base_best = max(results["plain"])
    base_cpu = statistics.median(cpu["plain"])
    for case in cases:
        median, best = statistics.median(results[case]), max(results[case])
        us = statistics.median(cpu[case])
        # Each round loads every case once, back to back: the median of the
        # per-round losses cancels the machine's slow drifts.
        paired = statistics.median(
            1 - rps / plain for rps, plain in zip(results[case], results["plain"])
        )
        print(
            f"  {case:<32} {median:7.0f} {(1 - median / base) * 100:5.1f}%  "
            f"{best:7.0f} {(1 - best / base_best) * 100:5.1f}%  "
            f"{paired * 100:5.1f}%  "
            f"{us:6.1f}us {(1 - base_cpu / us) * 100 if us else 0:5.1f}%"
        )
    print("  slices (req/s):")
    for case in cases:
        print(f"    {case:<32} " + ", ".join(f"{r:.0f}" for r in results[case]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
