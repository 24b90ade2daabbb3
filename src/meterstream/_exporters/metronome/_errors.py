"""Reading Metronome's answers: error bodies and retry verdicts.

As the official ``metronome-sdk`` (Stainless) decides (the rules shared with
Stripe's are in :mod:`meterstream._exporters.answers`): ``x-should-retry``
wins when present; the wait is ``retry-after-ms`` (milliseconds), else
``retry-after``. Metronome's 4xx bodies are ``{"message": "..."}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Optional

from meterstream._exporters import answers
from meterstream._exporters.answers import retryable

__all__ = ["CANNOT_CANCEL", "error_message", "retry_after", "retryable", "should_retry"]

#: Why ``cancel()`` of an event Metronome accepted is refused, and what to do.
CANNOT_CANCEL = (
    "Metronome cannot cancel or amend an ingested event (a re-sent transaction_id is "
    "ignored as a duplicate): while its invoice is a draft, record a negating use at "
    "Metronome (a negative value with a new identifier, under a SUM billable metric); "
    "once the invoice is finalized, grant a credit or issue a credit memo"
)


def retry_after(headers: Mapping[str, str]) -> Optional[float]:
    """Seconds the server asked us to wait, if it said (``retry-after-ms`` first)."""
    return answers.retry_after(headers, millis="retry-after-ms")


def should_retry(headers: Mapping[str, str]) -> Optional[bool]:
    """The server's ``x-should-retry`` verdict, when it gave one."""
    return answers.should_retry(headers, "x-should-retry")


def error_message(content: bytes, secret: Optional[str] = None) -> str:
    """The ``message`` of a Metronome error body, or the start of the body.

    A server that echoes *secret* does not get it into our logs.
    """
    message: Any
    try:
        body = json.loads(content)
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str):
            message = content[:200].decode("utf-8", "replace")
    except ValueError:
        message = content[:200].decode("utf-8", "replace")
    text = str(message)[:300]
    if secret and secret in text:
        text = text.replace(secret, "***")
    return text
