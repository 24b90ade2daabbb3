"""Meter event sessions: the short-lived token the stream endpoint takes.

``POST /v2/billing/meter_event_session`` with the secret key returns an
``authentication_token`` valid for ``expires_at - created`` (15 minutes at
Stripe). The token is refreshed after ``refresh_fraction`` of that lifetime,
timed on the monotonic clock from when the answer arrived, so a skewed local
wall clock does not matter; and again whenever the stream answers 401.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any, Callable, Optional

import httpx

from meterstream._exporters.base import RetryableExportError
from meterstream._exporters.stripe._errors import error_fields, retry_after, retryable, should_retry
from meterstream._otel import session_span
from meterstream.errors import DeliveryError

__all__ = ["SessionManager", "parse_rfc3339", "usable_token"]

DEFAULT_LIFETIME = 15 * 60.0


def parse_rfc3339(text: str) -> float:
    """Unix seconds of an RFC 3339 timestamp such as ``2024-06-01T12:15:00.000Z``."""
    if not isinstance(text, str):
        raise ValueError(f"not an RFC 3339 string: {text!r}")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(_trim_fraction(text)).timestamp()


def _trim_fraction(text: str) -> str:
    # Python 3.9/3.10 fromisoformat takes at most 6 fractional digits.
    if "." not in text:
        return text
    head, _, rest = text.partition(".")
    digits = ""
    while rest and rest[0].isdigit():
        digits, rest = digits + rest[0], rest[1:]
    return f"{head}.{(digits + '000000')[:6]}{rest}"


def usable_token(token: Any) -> bool:
    """A token that can go in an Authorization header as it is."""
    return (
        isinstance(token, str)
        and 0 < len(token) <= 4096
        and token.isascii()
        and token.isprintable()
        and " " not in token
    )


class SessionManager:
    """Hands out a valid stream token; one refresh at a time, shared by all senders."""

    def __init__(
        self,
        post: Callable[[bytes, dict[str, str]], httpx.Response],
        api_key: str,
        headers: dict[str, str],
        *,
        refresh_fraction: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        #: Sends the session request: the answer, whatever its status; a
        #: failure to get one is a RetryableExportError (DeliveryError at shutdown).
        self._post = post
        self._api_key = api_key
        self._headers = headers
        self._refresh_fraction = refresh_fraction
        self._clock = clock
        self._lock = threading.Lock()
        self._token: Optional[str] = None
        self._refresh_at = 0.0
        self.opened = 0
        self.requests = 0

    def token(self) -> str:
        """A token good for now, opening a new session when due."""
        token = self._token
        if token is not None and self._clock() < self._refresh_at:
            return token
        with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                self._open()
            assert self._token is not None
            return self._token

    def invalidate(self, token: str) -> None:
        """The stream refused *token*: the next ``token()`` opens a new session.

        Only if it is still the current one, so that senders that saw the same
        401 cause one refresh, not one each.
        """
        with self._lock:
            if self._token == token:
                self._token = None

    def reset(self) -> None:
        """After a fork: no token of the parent's, and a lock nobody holds."""
        self._lock = threading.Lock()
        self._token = None
        self.opened = self.requests = 0

    def _open(self) -> None:
        with session_span() as span:
            self._open_traced(span)

    def _open_traced(self, span: Any) -> None:
        headers = dict(self._headers)
        headers["Authorization"] = f"Bearer {self._api_key}"
        self.requests += 1
        # The caller's post bounds the whole request (deadline, answer size).
        response = self._post(b"{}", headers)
        received = self._clock()
        status = response.status_code
        span.set("http.response.status_code", status)
        if 200 <= status < 300:  # any 2xx with a usable token is a session
            try:
                body = response.json()
                token = body["authentication_token"]
                lifetime = parse_rfc3339(body["expires_at"]) - parse_rfc3339(body["created"])
            except (ValueError, KeyError, TypeError) as exc:
                raise RetryableExportError(
                    f"unexpected meter event session response: {exc!r}", status=status
                ) from None
            if not usable_token(token):
                raise RetryableExportError(
                    "meter event session without a usable token", status=status
                )
            if not 0 < lifetime <= 24 * 3600:
                lifetime = DEFAULT_LIFETIME
            self._token = token
            self._refresh_at = received + lifetime * self._refresh_fraction
            self.opened += 1
            return
        _, code, message = error_fields(response, self._api_key)
        verdict = should_retry(response)
        if status in (401, 403) and verdict is not True:
            raise DeliveryError(
                f"Stripe refused the secret key when opening a meter event session "
                f"({status}{', ' + code if code else ''}: {message or 'no message'}). Check "
                "api_key / STRIPE_API_KEY: it must be a secret key (sk_...) or a restricted "
                "key allowed to write billing meter events.",
                reason="authentication",
                status=status,
                code=code,
            )
        if retryable(status, verdict):
            raise RetryableExportError(
                f"opening a meter event session: HTTP {status} {code or ''} {message}".strip(),
                retry_after=retry_after(response.headers),
                status=status,
            )
        raise DeliveryError(
            f"opening a meter event session failed: HTTP {status} {code or ''} {message}".strip(),
            reason="rejected",
            status=status,
            code=code,
        )
