"""A child process for the parallel-run SIGKILL test (tests/client/test_parallel_kill.py).

Run as ``python -m apps.parallel_child SPOOL URL PREFIX THREADS`` with
``tests/`` on ``PYTHONPATH``: a client sending to Stripe and Metronome (both
the emulator at URL) with a spool records from THREADS threads at full speed,
forever, with identifiers ``PREFIX-<thread>-<n>``; each identifier is written
to stdout (one ``os.write`` a line) only after ``record()`` returned. Prints
``ready`` first. Meant to be SIGKILLed.
"""

from __future__ import annotations

import sys

import meterstream
from apps.spool_child import record_forever_with

API_KEY = "sk_test_parallel"
TOKEN = "mt_parallel_token"


def make_client(spool: str, url: str, **settings: object) -> meterstream.MeterClient:
    return meterstream.MeterClient(
        destinations=["stripe", "metronome"],
        api_key=API_KEY,
        api_base=url,
        stream_base=url,
        metronome_api_key=TOKEN,
        metronome_base=url,
        spool_path=spool,
        retry_initial_delay=0.005,
        retry_max_delay=0.05,
        **settings,
    )


def record_forever(spool: str, url: str, prefix: str, threads: int) -> None:
    record_forever_with(make_client(spool, url), prefix, threads)


if __name__ == "__main__":
    record_forever(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
