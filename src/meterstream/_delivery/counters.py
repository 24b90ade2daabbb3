"""The counts behind ``stats()``: one object owns every one of them.

The buffer, the delivery threads and the client's checks each add to it;
``MeterClient.stats()`` reads it. Nothing else keeps a count of events.
"""

from __future__ import annotations

import threading

__all__ = ["DROP_REASONS", "FAIL_REASONS", "Counters"]

#: Why an event was never queued, or was discarded: ``dropped_<reason>``.
DROP_REASONS = (
    "queue_full",
    "shutdown",
    "invalid",
    "missing_customer",
    "spool_full",
    "spool_error",
    "disk_full",
)
#: Why an accepted event was not delivered: ``failed_<reason>``.
FAIL_REASONS = ("rejected", "retries_exhausted")
NAMES = (
    "sent",
    "retried",
    *(f"failed_{reason}" for reason in FAIL_REASONS),
    # Events refused before they were queued ...
    *(f"dropped_{reason}" for reason in DROP_REASONS),
    # ... and accepted ones discarded later, which stats() adds to
    # dropped_queue_full and dropped_shutdown: drop_oldest's evictions, and
    # what shutdown() gave up.
    "evicted_oldest",
    "abandoned_shutdown",
    # With a spool: batches given back to wait in it (out of retry time, or
    # in flight at shutdown), not failed; and events moved to its dead letters.
    "returned_to_spool",
    "spooled",
)


class Counters:
    """Event counts by outcome, safe to add to from any thread."""

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(NAMES, 0)

    def add(self, name: str, count: int = 1) -> None:
        """Add *count* to the counter *name* (one of :data:`NAMES`)."""
        with self._lock:
            self._counts[name] += count

    def snapshot(self) -> dict[str, int]:
        """Every counter, read at one moment."""
        with self._lock:
            return dict(self._counts)

    def reset_after_fork(self) -> None:
        """In a forked child: a fresh lock, and nothing counted of the parent's events."""
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(NAMES, 0)
