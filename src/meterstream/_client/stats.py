"""What ``MeterClient.stats()`` reports: one dict composed from the counts
that the counters, the delivery threads, the buffer (or spool), the aggregator
and Stripe's error reports each own.

Nothing here counts: every number is asked of its owner when stats() is
called, so the record path pays nothing for it.
"""

from __future__ import annotations

from typing import Optional, Union

from meterstream import _otel
from meterstream._aggregate.aggregator import Aggregator
from meterstream._delivery.counters import DROP_REASONS, FAIL_REASONS, Counters
from meterstream._delivery.delivery import Delivery
from meterstream._delivery.event_queue import EventQueue
from meterstream._internal import report_internal_error
from meterstream._spool.aggregate import SpoolAggregator
from meterstream._spool.spool import Spool
from meterstream._truth.reports import ErrorReports

__all__ = ["client_stats"]


def client_stats(
    *,
    counters: Counters,
    delivery: Delivery,
    buffer: EventQueue,
    spool: Optional[Spool],
    aggregator: Optional[Union[Aggregator, SpoolAggregator]],
    aggregating: bool,
    reports: ErrorReports,
    accepted_key: str,
) -> dict[str, int]:
    """The counts of ``MeterClient.stats()`` (its docstring says what each means).

    Args:
        accepted_key: the key of what the exporter accepted (``sent``, or
            the local exporter's name).
        aggregating: the ``aggregate`` setting names something: only then
            are the aggregator's counts shown (a spool aggregates what a previous
            process left without it).
    """
    counts = counters.snapshot()
    flight = delivery.counters()
    failed = counts["failed_rejected"] + counts["failed_retries_exhausted"]
    queued = len(buffer) + flight["inflight"]
    # "recorded" is derived rather than counted on the hot path: every
    # accepted event is queued or has exactly one final outcome.
    settled = counts["sent"] + failed + counts["abandoned_shutdown"] + counts["evicted_oldest"]
    recorded = settled + queued
    if spool is not None:
        # The spool is shared: what waits there may be other processes'.
        # This process counts what it put in, one insert at a time anyway.
        queued = buffer.pending()
        recorded = counts["spooled"] + spool.journal.written
    dropped = {reason: counts["dropped_" + reason] for reason in DROP_REASONS}
    dropped["queue_full"] += counts["evicted_oldest"]
    dropped["shutdown"] += counts["abandoned_shutdown"]
    out: dict[str, int] = {
        "recorded": recorded,
        "queued": queued,
        "sent": 0,
        "log": 0,
        "memory": 0,
        "none": 0,
        "retried": counts["retried"],
        "failed": failed,
        "dropped": sum(dropped.values()),
    }
    out[accepted_key] = counts["sent"]
    for reason in FAIL_REASONS:
        out["failed_" + reason] = counts["failed_" + reason]
    for reason in DROP_REASONS:
        out["dropped_" + reason] = dropped[reason]
    out["sessions_opened"] = flight["sessions_opened"]
    out["requests"] = flight["requests"]
    out["otel_errors"] = _otel.errors
    out.update(reports.counts())
    if spool is not None:
        out.update(_spool_counts(spool, counts))
    if aggregator is not None and aggregating:
        out.update(aggregator.stats())
    return out


def _spool_counts(spool: Spool, counts: dict[str, int]) -> dict[str, int]:
    out = {"spool_pending": 0, "spool_dead": 0, "spool_bytes": 0}
    out["returned_to_spool"] = counts["returned_to_spool"]
    try:
        status = spool.admin.status(accepted=False)  # a read: no catch-up of the history
    except Exception as exc:  # a stats() call must not fail on a bad disk
        report_internal_error(exc)
        return out
    out.update(spool_pending=status.pending, spool_dead=status.dead, spool_bytes=status.bytes)
    return out
