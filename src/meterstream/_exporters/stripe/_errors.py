"""Reading Stripe's answers: error bodies, retry verdicts, the event a 400 names.

One place decides what an answer means, for sessions and the stream alike:
any 2xx is accepted; ``Stripe-Should-Retry`` wins when present; otherwise
408, 409, 429 and 5xx are worth retrying and the rest are refusals (the
rules shared with Metronome's are in :mod:`meterstream._exporters.answers`).
"""

from __future__ import annotations

import json
import re
import ssl
from typing import Any, Optional

import httpx

from meterstream._config.setting import redact_key
from meterstream._exporters import answers
from meterstream._exporters.answers import RETRYABLE_STATUS, retryable

__all__ = [
    "RETRYABLE_STATUS",
    "certificate_failure",
    "error_fields",
    "event_param",
    "retryable",
    "retry_after",
    "should_retry",
]

_EVENT_PARAM = re.compile(r"events\[([0-9]{1,3})\]")


def retry_after(headers: httpx.Headers) -> Optional[float]:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), if present."""
    return answers.retry_after(headers)


def should_retry(response: httpx.Response) -> Optional[bool]:
    """Stripe's ``Stripe-Should-Retry`` verdict, when it gave one."""
    return answers.should_retry(response.headers, "stripe-should-retry")


def error_fields(
    response: httpx.Response, secret: Optional[str] = None
) -> tuple[Optional[str], Optional[str], str]:
    """(type, code, message) of a Stripe error body, as far as it can be read.

    A server that echoes *secret* (Stripe masks keys; a proxy may not) does not
    get it into our logs and exceptions.
    """
    try:
        body: Any = json.loads(response.content)
        error = body.get("error") or {}
        kind, code, message = error.get("type"), error.get("code"), str(error.get("message") or "")
    except (ValueError, AttributeError):
        kind, code, message = None, None, response.text[:200]
    if secret and secret in message:
        message = message.replace(secret, redact_key(secret))
    return (
        kind if isinstance(kind, str) else None,
        code if isinstance(code, str) else None,
        message,
    )


def event_param(response: httpx.Response, count: int) -> tuple[Optional[str], Optional[int]]:
    """Stripe's ``param`` and, when it names ``events[i]`` of this request, *i*."""
    try:
        error = json.loads(response.content).get("error")
        param = error.get("param") if isinstance(error, dict) else None
    except (ValueError, AttributeError):
        return None, None
    if not isinstance(param, str):
        return None, None
    param = param[:200]
    match = _EVENT_PARAM.match(param)
    if match is None or int(match.group(1)) >= count:
        return param, None
    return param, int(match.group(1))


def certificate_failure(exc: BaseException) -> Optional[BaseException]:
    """The certificate verification error behind an httpx error, if that is what it is."""
    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        current = current.__cause__ or current.__context__
    return None
