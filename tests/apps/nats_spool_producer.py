"""A producer process with exporter=nats and a spool.

``record URL SPOOL PREFIX COUNT``: prints ``ready`` once configured, waits for
a line on stdin, records COUNT events (identifiers PREFIX-i), printing each
identifier once ``record()`` returned, then ``done``, and waits to be killed.
``drain URL SPOOL``: opens the same spool, flushes it to JetStream, exits 0.
"""

from __future__ import annotations

import sys

import meterstream


def main() -> int:
    mode, url, spool = sys.argv[1], sys.argv[2], sys.argv[3]
    client = meterstream.MeterClient(
        exporter="nats",
        nats_url=url,
        spool_path=spool,
        raise_errors=True,
        request_timeout=1.0,
        retry_initial_delay=0.05,
        retry_max_delay=0.5,
        max_queue_size=50,
    )
    if mode == "drain":
        ok = client.flush(90)
        print(client.stats(), flush=True)
        client.shutdown(10)
        return 0 if ok else 1
    prefix, count = sys.argv[4], int(sys.argv[5])
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(count):
        client.record("api_calls", customer=f"cus_{i % 3}", identifier=f"{prefix}-{i}")
        print(f"{prefix}-{i}", flush=True)
    print("done", flush=True)
    sys.stdin.readline()  # killed here
    return 0


if __name__ == "__main__":
    sys.exit(main())
