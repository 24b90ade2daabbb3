"""A producer process: records COUNT events with identifiers PREFIX-i through NATS."""

from __future__ import annotations

import sys

import meterstream


def main() -> int:
    url, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = meterstream.MeterClient(exporter="nats", nats_url=url, raise_errors=True)
    for i in range(count):
        client.record("api_calls", customer=f"cus_{i % 9}", identifier=f"{prefix}-{i}")
    ok = client.flush(60)
    client.shutdown(10)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
