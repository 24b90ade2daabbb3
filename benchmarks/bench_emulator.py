"""Throughput of the local emulator's meter event stream.

Spawns ``python -m meterstream.emulator`` in its own process, then drives it
from client processes over keep-alive connections (raw sockets, several per
process, multiplexed with ``selectors``), each request a batch of distinct
events. Prints requests/s and events/s.

    python benchmarks/bench_emulator.py --duration 10 --connections 16

This is a script, not a test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import selectors
import socket
import sys
import time
from typing import Any

# Run from a checkout without installing.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from meterstream.emulator import Emulator


def _session_token(host: str, port: int) -> str:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request(
        "POST", "/v2/billing/meter_event_session", headers={"Authorization": "Bearer sk_test_bench"}
    )
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    token: str = body["authentication_token"]
    return token


def _template(worker: int, batch: int, timestamp: str) -> str:
    # One %d per event for the identifier: a single %-format builds a batch.
    event = (
        f'{{"identifier":"w{worker}-%d","event_name":"bench_api","timestamp":"{timestamp}",'
        f'"payload":{{"stripe_customer_id":"cus_{worker}","value":"1"}}}}'
    )
    return '{"events":[' + ",".join([event] * batch) + "]}"


class _Conn:
    __slots__ = ("sock", "buf", "need")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.need = -1  # total bytes of the current response, once headers are in


def _worker(
    worker: int,
    host: str,
    port: int,
    token: str,
    batch: int,
    connections: int,
    duration: float,
    results: Any,
) -> None:
    timestamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    template = _template(worker, batch, timestamp)
    head = (
        f"POST /v2/billing/meter_event_stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        "Content-Length: %d\r\n\r\n"
    )
    counter = 0

    def request() -> bytes:
        nonlocal counter
        body = (template % tuple(range(counter, counter + batch))).encode()
        counter += batch
        return (head % len(body)).encode() + body

    sel = selectors.DefaultSelector()
    conns = []
    for _ in range(connections):
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(sock)
        conns.append(conn)
        sel.register(sock, selectors.EVENT_READ, conn)
    ok = failed = 0
    statuses: dict[str, int] = {}
    deadline = time.perf_counter() + duration
    started = time.perf_counter()
    for conn in conns:
        conn.sock.sendall(request())
    inflight = len(conns)
    while inflight:
        for key, _ in sel.select(timeout=5):
            conn = key.data
            data = conn.sock.recv(65536)
            if not data:
                raise RuntimeError("the emulator closed a connection")
            conn.buf += data
            if conn.need < 0:
                end = conn.buf.find(b"\r\n\r\n")
                if end < 0:
                    continue
                headers = conn.buf[:end].lower()
                at = headers.find(b"content-length:")
                length = int(
                    headers[
                        at + 15 : headers.find(b"\r\n", at)
                        if headers.find(b"\r\n", at) > 0
                        else len(headers)
                    ]
                )
                conn.need = end + 4 + length
            if len(conn.buf) < conn.need:
                continue
            status = conn.buf[9:12].decode()
            statuses[status] = statuses.get(status, 0) + 1
            if status == "200":
                ok += 1
            else:
                failed += 1
            conn.buf = conn.buf[conn.need :]
            conn.need = -1
            if time.perf_counter() < deadline:
                conn.sock.sendall(request())
            else:
                inflight -= 1
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.sock.close()
    results.put({"ok": ok, "failed": failed, "elapsed": elapsed, "statuses": statuses})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (<= 20)")
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--connections", type=int, default=16, help="connections per client")
    parser.add_argument("--batch", type=int, default=100, help="events per request (1..100)")
    parser.add_argument(
        "--webhook",
        metavar="URL",
        help="also run the asynchronous validation (every second) and report to URL",
    )
    args = parser.parse_args()
    duration = min(args.duration, 20.0)
    extra = ["--webhook", args.webhook, "--webhook-secret", "whsec_bench"] if args.webhook else []

    with Emulator.spawn(auto_create_meters=True, extra_args=extra) as emu:
        host, port = "127.0.0.1", emu.port
        token = _session_token(host, port)
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        procs = [
            ctx.Process(
                target=_worker,
                args=(w, host, port, token, args.batch, args.connections, duration, results),
            )
            for w in range(args.clients)
        ]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=duration + 60) for _ in procs]
        for p in procs:
            p.join()
        snapshot = emu.snapshot()

    ok = sum(o["ok"] for o in outcomes)
    failed = sum(o["failed"] for o in outcomes)
    elapsed = max(o["elapsed"] for o in outcomes)
    statuses: dict[str, int] = {}
    for o in outcomes:
        for k, v in o["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    events = ok * args.batch
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(
        f"{args.clients} client process(es) x {args.connections} keep-alive connections, "
        f"{args.batch} events/request, {elapsed:.1f} s"
    )
    print(f"requests: {ok} ok, {failed} failed, statuses {statuses}")
    print(f"requests/s: {ok / elapsed:,.0f}")
    print(f"events/s:   {events / elapsed:,.0f}")
    stored = snapshot["events_stored"]
    print(
        f"emulator stored {stored:,} events (expected {events:,}), "
        f"duplicates {snapshot['duplicates']}"
    )
    return 0 if failed == 0 and stored == events else 1


if __name__ == "__main__":
    sys.exit(main())
