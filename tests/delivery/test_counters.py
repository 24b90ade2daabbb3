"""stats() reads one set of counters, which every part of the pipeline adds to."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import meterstream
from meterstream._delivery.counters import NAMES, Counters


def test_the_buffer_and_the_delivery_count_into_the_clients_counters() -> None:
    client = meterstream.MeterClient(exporter="memory", max_queue_size=2)
    try:
        assert client._buffer.counters is client._counters
        assert client._delivery._counters is client._counters
        for i in range(3):
            client.record("calls", i, customer="cus_1")  # the third: queue full
        client.record("calls", 1)  # no customer: dropped
        assert client.flush(10)
        assert client._counters.snapshot() == {
            **dict.fromkeys(NAMES, 0),
            "sent": 2,
            "dropped_queue_full": 1,
            "dropped_missing_customer": 1,
        }
        stats = client.stats()
        assert (stats["recorded"], stats["memory"], stats["dropped"]) == (2, 2, 2)
    finally:
        client.shutdown(0)


def test_counters_add_and_reset() -> None:
    counters = Counters()
    counters.add("sent", 3)
    counters.add("retried")
    assert counters.snapshot()["sent"] == 3 and counters.snapshot()["retried"] == 1
    counters.reset_after_fork()
    assert set(counters.snapshot().values()) == {0}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_counts_only_its_own_events() -> None:
    """Before, the child's stats() showed its parent's invalid and missing-customer
    drops (and none of the parent's other counts)."""
    script = textwrap.dedent(
        """
        import os, meterstream
        client = meterstream.configure(exporter="memory")
        meterstream.record("calls", float("nan"), customer="cus_1")  # invalid
        meterstream.record("calls", 1)  # no customer
        meterstream.record("calls", 1, customer="cus_1")
        assert meterstream.flush(10)
        pid = os.fork()
        if pid == 0:
            stats = meterstream.stats()
            counts = (stats["dropped"], stats["recorded"], stats["memory"])
            os._exit(0 if counts == (0, 0, 0) else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert meterstream.stats()["dropped"] == 2
        """
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
