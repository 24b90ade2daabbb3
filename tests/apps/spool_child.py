"""Child processes for the spool tests (tests/spool/): record, or deliver, on a shared spool.

Run as ``python -m apps.spool_child MODE SPOOL URL ...`` with ``tests/`` on
``PYTHONPATH``:

``record SPOOL URL PREFIX THREADS``
    record from THREADS threads at full speed, forever, with identifiers
    ``PREFIX-<thread>-<n>`` (PREFIX ``generated``: none given, the one
    ``record()`` returned); each identifier is written to stdout (one
    ``os.write`` a line, atomic on a pipe) only after ``record()`` returned.
    Prints ``ready`` first. Meant to be SIGKILLed.
``write SPOOL URL PREFIX COUNT``
    record COUNT events one after the other, timestamps one second apart
    ending a minute ago, then shut down and exit.
``deliver SPOOL URL TIMEOUT [CONCURRENCY]``
    open the spool, ``flush(TIMEOUT)``, print the flush result and ``stats()``
    as JSON, shut down; CONCURRENCY is ``max_concurrent_requests``.

``share`` is the multiprocessing entry point (:func:`share`).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import meterstream

API_KEY = "sk_test_spool"
#: The PREFIX that records without identifiers: each line is the one record() generated.
GENERATED = "generated"
FAST_RETRIES = {"retry_initial_delay": 0.005, "retry_max_delay": 0.05}


def make_client(spool: str, url: str, **settings: object) -> meterstream.MeterClient:
    return meterstream.MeterClient(
        api_key=API_KEY,
        api_base=url,
        stream_base=url,
        spool_path=spool,
        **{**FAST_RETRIES, **settings},
    )


def record_forever(spool: str, url: str, prefix: str, threads: int) -> None:
    record_forever_with(make_client(spool, url), prefix, threads)


def record_forever_with(client: meterstream.MeterClient, prefix: str, threads: int) -> None:
    """*client* records from *threads* threads at full speed, forever, each
    identifier written to stdout once ``record()`` returned."""
    start = threading.Event()

    def worker(index: int) -> None:
        start.wait()
        n = 0
        while True:
            if prefix == GENERATED:
                ident = client.record("api_calls", customer=f"cus_{index}")
            else:
                ident = f"{prefix}-{index}-{n}"
                client.record("api_calls", customer=f"cus_{index}", identifier=ident)
            os.write(1, (f"{ident}\n").encode())
            n += 1

    for index in range(threads):
        threading.Thread(target=worker, args=(index,), daemon=True).start()
    os.write(1, b"ready\n")
    start.set()
    threading.Event().wait()


def write(spool: str, url: str, prefix: str, count: int) -> None:
    client = make_client(spool, url)
    first = int(time.time()) - 60 - count
    for n in range(count):
        client.record(
            "api_calls", customer="cus_order", identifier=f"{prefix}-{n}", timestamp=first + n
        )
    client.shutdown(0.5)
    print(json.dumps({"first": first, "stats": client.stats()}), flush=True)


def deliver(spool: str, url: str, timeout: float, concurrency: int) -> None:
    client = make_client(spool, url, max_concurrent_requests=concurrency)
    flushed = client.flush(timeout)
    print(json.dumps({"flushed": flushed, "stats": client.stats()}), flush=True)
    client.shutdown(5)


def share(spool: str, url: str, prefix: str, count: int) -> None:
    """One multiprocessing child: record COUNT events, flush, exit nonzero unless settled."""
    client = make_client(spool, url)
    for n in range(count):
        client.record("api_calls", customer="cus_share", identifier=f"{prefix}-{n}")
    flushed = client.flush(60)
    client.shutdown(5)
    if not flushed:
        raise SystemExit(f"{prefix}: flush() returned False: {client.stats()}")


def main(argv: list[str]) -> None:
    mode, spool, url = argv[:3]
    if mode == "record":
        record_forever(spool, url, argv[3], int(argv[4]))
    elif mode == "write":
        write(spool, url, argv[3], int(argv[4]))
    elif mode == "deliver":
        deliver(spool, url, float(argv[3]), int(argv[4]) if len(argv) > 4 else 4)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
