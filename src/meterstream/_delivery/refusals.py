"""Which events of a failed batch go again, and which are refused.

A batch keeps its events' identifiers through every retry; when it must
lose events (a 400 naming one, one that cannot be encoded, one grown too
old), the rest go on in its place. Each function here answers with the
indices that go on, in parts, and the refused ones with their errors.
"""

from __future__ import annotations

from typing import Optional

from meterstream._record.events import EventBatch
from meterstream.errors import DeliveryError

__all__ = ["Split", "split_expired", "split_refused", "split_unencodable"]

#: (parts that go on, each a list of indices; refused indices with their error)
Split = tuple[list[list[int]], list[tuple[list[int], DeliveryError]]]


def _rest(count: int, gone: set[int]) -> list[list[int]]:
    rest = [i for i in range(count) if i not in gone]
    return [rest] if rest else []


def split_refused(count: int, exc: DeliveryError) -> Optional[Split]:
    """A 400 for a batch of *count*: None when the batch (of one) is the refused event."""
    index = exc.index
    if index is not None and 0 <= index < count:
        return _rest(count, {index}), [([index], exc)]
    if count > 1:
        # Which event? Halves, each sent at once, until the bad ones are alone.
        half = count // 2
        return [list(range(half)), list(range(half, count))], []
    return None


def split_unencodable(batch: EventBatch) -> Optional[Split]:
    """Set aside the events that cannot be encoded; None when every event can."""
    bad = batch.unencodable()
    if not bad:
        return None
    count = len(batch)
    refused = [
        (
            [i],
            DeliveryError(
                f"event {i} of {count} could not be encoded ({reason}): "
                "set aside, the others were sent",
                reason="rejected",
                code="unencodable_event",
                index=i,
            ),
        )
        for i, reason in bad
    ]
    return _rest(count, {i for i, _ in bad}), refused


def split_expired(batch: EventBatch, cutoff: float) -> Split:
    """Events older than *cutoff* (Stripe's 35-day window): refused; the rest go on."""
    stamps = batch.timestamps()
    old = {i for i, t in enumerate(stamps) if t < cutoff}
    refused = [
        (
            [i],
            DeliveryError(
                "the event is more than 35 days old, past what Stripe accepts",
                reason="rejected",
                code="timestamp_too_far_in_past",
            ),
        )
        for i in sorted(old)
    ]
    return _rest(len(batch), old), refused
