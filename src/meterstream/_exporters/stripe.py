"""The Stripe exporter: Meter Event Streams v2 over one keep-alive httpx client."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable, Optional

import httpx

from .._internal import RateLimitedLog
from .._session import (
    RETRYABLE_STATUS,
    SessionManager,
    error_fields,
    retry_after,
    should_retry,
)
from .._version import __version__
from ..errors import DeliveryError
from ._watchdog import RequestWatchdog
from .base import EventBatch, Exporter, RetryableExportError

if TYPE_CHECKING:
    from .._config import Settings

__all__ = ["StripeExporter"]

SESSION_PATH = "/v2/billing/meter_event_session"
STREAM_PATH = "/v2/billing/meter_event_stream"


class StripeExporter(Exporter):
    """Sends batches to ``POST {stream_base}/v2/billing/meter_event_stream``.

    Opens and rotates meter event sessions with the secret key, sends each
    batch with a stable ``Idempotency-Key`` (the batch id, the same on every
    retry), and sorts Stripe's answers into accepted, worth retrying
    (:class:`RetryableExportError`) and refused (:class:`DeliveryError`).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        transport: Optional[httpx.BaseTransport] = None,
        clock: Optional[Callable[[], float]] = None,
    ) -> None:
        assert settings.api_key, "the stripe exporter needs an api_key"
        self._settings = settings
        self._transport = transport
        #: How many batches the delivery may have in flight at once.
        self.max_concurrency = settings.max_concurrent_requests
        self._headers = {
            "Stripe-Version": settings.stripe_version,
            "User-Agent": f"meterstream/{__version__}",
            "Content-Type": "application/json",
        }
        self._http = self._new_http()
        self._stream_url = settings.stream_base + STREAM_PATH
        extra = {} if clock is None else {"clock": clock}
        self.sessions = SessionManager(
            self._http,
            settings.api_base + SESSION_PATH,
            settings.api_key,
            self._headers,
            trace=lambda name, info: self.watchdog.trace(name, info),
            **extra,  # type: ignore[arg-type]
        )
        self._requests = 0
        self._log = RateLimitedLog()
        self._lock = threading.Lock()
        self._closed = False

    def _new_http(self) -> httpx.Client:
        timeout = self._settings.request_timeout
        self.watchdog = RequestWatchdog(timeout)
        return httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(
                max_connections=self._settings.max_concurrent_requests + 1,
                max_keepalive_connections=self._settings.max_concurrent_requests + 1,
            ),
            http2=self._settings.http2,
            transport=self._transport,
            trust_env=False,
        )

    def stats(self) -> dict[str, int]:
        return {
            "sessions_opened": self.sessions.opened,
            "requests": self._requests + self.sessions.requests,
        }

    def export(self, events: EventBatch, batch_id: str = "") -> None:
        if self._closed:
            raise DeliveryError("the exporter was shut down", reason="shutdown")
        try:
            with self.watchdog.guard():
                self._send(events, batch_id)
        except RuntimeError:
            # httpx refuses to send on a client closed by shutdown() meanwhile.
            if self._closed:
                raise DeliveryError("the exporter was shut down", reason="shutdown") from None
            raise

    def _send(self, events: EventBatch, batch_id: str) -> None:
        token = self.sessions.token()
        headers = {"Authorization": f"Bearer {token}"}
        if batch_id:
            headers["Idempotency-Key"] = f"meterstream-{batch_id}"
        body = events.to_json()
        with self._lock:
            self._requests += 1
        try:
            response = self._http.post(
                self._stream_url,
                content=body,
                headers=headers,
                extensions={"trace": self.watchdog.trace},
            )
        except httpx.TransportError as exc:
            raise RetryableExportError(f"sending meter events failed: {exc!r}") from None
        status = response.status_code
        if status == 200:
            return
        kind, code, message = error_fields(response, self._settings.api_key)
        verdict = should_retry(response)
        if status == 401 and verdict is not False:
            # The session expired early, or was revoked: a new one, then the
            # same batch again (retry_after=0: at once, the first time).
            self.sessions.invalidate(token)
            raise RetryableExportError(
                f"meter event session refused ({kind or code or status}); rotating",
                retry_after=0.0,
                status=status,
            )
        if verdict is True or (verdict is None and (status in RETRYABLE_STATUS or status >= 500)):
            raise RetryableExportError(
                f"HTTP {status} {code or kind or ''} {message}".strip(),
                retry_after=retry_after(response.headers),
                status=status,
            )
        raise DeliveryError(
            f"Stripe refused {len(events)} meter events: HTTP {status} "
            f"{code or kind or ''}: {message}".strip(),
            reason="rejected",
            status=status,
            code=code,
        )

    def shutdown(self) -> None:
        self._closed = True
        self.watchdog.close()
        self._http.close()

    def after_fork_in_child(self) -> None:
        # The parent's sockets are shared with us: drop (never close) them.
        self._http = self._new_http()
        self.sessions.reset(self._http)
        self._requests = 0
        self._lock = threading.Lock()
