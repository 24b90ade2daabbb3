"""Reading an HTTP answer's retry verdict and wait, for every network exporter.

Stripe's and Metronome's official SDKs decide the same way: the server's
own verdict header wins when present (``Stripe-Should-Retry``,
``x-should-retry``); otherwise 408, 409, 429 and 5xx are worth retrying and
the rest are refusals. The wait the server asks for is ``Retry-After``
(seconds or an HTTP date), after a milliseconds header where the SDK reads
one (Metronome's ``retry-after-ms``). Each exporter's ``_errors`` names its
headers and reads its own error bodies.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Optional

__all__ = ["RETRYABLE_STATUS", "retry_after", "retryable", "should_retry"]

RETRYABLE_STATUS = frozenset({408, 409, 429})


def retry_after(headers: Mapping[str, str], millis: Optional[str] = None) -> Optional[float]:
    """Seconds the server asked us to wait, if it said.

    Args:
        headers: the answer's headers (lower-case names, or httpx's headers).
        millis: a header read first, in milliseconds (``retry-after-ms``).
    """
    if millis is not None:
        value = headers.get(millis)
        if value:
            try:
                return max(0.0, float(value) / 1000.0)
            except ValueError:
                pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def should_retry(headers: Mapping[str, str], header: str) -> Optional[bool]:
    """The server's verdict in *header* (``true`` / ``false``), when it gave one."""
    value = (headers.get(header) or "").strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def retryable(status: int, verdict: Optional[bool]) -> bool:
    """Whether an answer of *status* is worth sending again, given the server's *verdict*."""
    if verdict is not None:
        return verdict
    return status in RETRYABLE_STATUS or status >= 500
