"""Reading Metronome's answers: error bodies and retry verdicts.

As the official ``metronome-sdk`` (Stainless) decides: ``x-should-retry``
wins when present; otherwise 408, 409, 429 and 5xx are worth retrying and
the rest are refusals. The wait the server asks for is ``retry-after-ms``
(milliseconds), else ``retry-after`` (seconds or an HTTP date). Metronome's
4xx bodies are ``{"message": "..."}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Optional

__all__ = ["error_message", "retry_after", "retryable", "should_retry"]

_RETRYABLE = frozenset({408, 409, 429})


def retry_after(headers: Mapping[str, str]) -> Optional[float]:
    """Seconds the server asked us to wait, if it said (``retry-after-ms`` first)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
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


def should_retry(headers: Mapping[str, str]) -> Optional[bool]:
    """The server's ``x-should-retry`` verdict, when it gave one."""
    value = (headers.get("x-should-retry") or "").strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def retryable(status: int, verdict: Optional[bool]) -> bool:
    """Whether an answer of *status* is worth sending again, given the *verdict*."""
    if verdict is not None:
        return verdict
    return status in _RETRYABLE or status >= 500


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
