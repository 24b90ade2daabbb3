"""Child processes for the spool's fold tests: record folded uses, or fold, on a shared spool.

Run as ``python -m apps.aggregate_child MODE SPOOL URL ...`` with ``tests/`` on
``PYTHONPATH``. Every client folds ``tokens`` (``aggregate``) in 1-second
windows and delivers to URL.

``record SPOOL URL THREADS SEED``
    record ``tokens`` uses from THREADS threads at full speed, forever: ints
    and Decimals, for three customers. Each use is written to stdout as
    ``<customer> <value>`` (one ``os.write`` a line, atomic on a pipe) only
    after ``record()`` returned. Prints ``ready`` first. Meant to be SIGKILLed.
``exit SPOOL URL COUNT``
    record COUNT uses (value n for the n-th, customer ``cus_exit``) and leave
    with ``os._exit(0)``: no flush, no shutdown, no atexit.
``fold SPOOL``
    wait for a line on stdin, then fold every window of the spool's uses
    until none is left; print how many events this process made.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from decimal import Decimal

import meterstream
from meterstream._spool.spool import Spool

API_KEY = "sk_test_spool"
CUSTOMERS = ("cus_a", "cus_b", "cus_c")


def make_client(spool: str, url: str) -> meterstream.MeterClient:
    return meterstream.MeterClient(
        api_key=API_KEY,
        api_base=url,
        stream_base=url,
        spool_path=spool,
        aggregate={"tokens": "sum"},
        aggregation_window=1,
        flush_interval=0.1,
        raise_errors=True,
        retry_initial_delay=0.005,
        retry_max_delay=0.05,
    )


def record_forever(spool: str, url: str, threads: int, seed: int) -> None:
    client = make_client(spool, url)
    start = threading.Event()

    def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        start.wait()
        while True:
            customer = CUSTOMERS[rng.randrange(3)]
            value: object
            if rng.random() < 0.5:
                value = rng.randint(1, 1000)
            else:
                value = Decimal(rng.randint(1, 999_999)).scaleb(-3)
            try:
                client.record("tokens", value, customer=customer)
            except meterstream.MeterError:
                continue  # refused: not acknowledged
            os.write(1, f"{customer} {value}\n".encode())

    for index in range(threads):
        threading.Thread(target=worker, args=(index,), daemon=True).start()
    os.write(1, b"ready\n")
    start.set()
    threading.Event().wait()


def record_and_exit(spool: str, url: str, count: int) -> None:
    client = make_client(spool, url)
    for n in range(1, count + 1):
        client.record("tokens", n, customer="cus_exit")
    os._exit(0)


def aggregate(spool_path: str) -> None:
    spool = Spool(spool_path)
    sys.stdin.readline()
    made = 0
    while spool.uses_count():
        made += spool.aggregate_due(time.time() + 3600)
    print(made, flush=True)
    spool.close()


def main(argv: list[str]) -> None:
    mode, spool = argv[:2]
    if mode == "record":
        record_forever(spool, argv[2], int(argv[3]), int(argv[4]))
    elif mode == "exit":
        record_and_exit(spool, argv[2], int(argv[3]))
    elif mode == "aggregate":
        aggregate(spool)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
