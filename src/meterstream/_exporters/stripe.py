"""The Stripe exporter: Meter Event Streams v2 over keep-alive connections.

Sessions are opened with httpx. Batches go over :mod:`._http11`, a small
HTTP/1.1 client that costs the app's threads a tenth of the CPU per batch;
over httpx when ``http2`` is on or a transport is given.
"""

from __future__ import annotations

import json
import re
import threading
from typing import TYPE_CHECKING, Callable, Optional
from urllib.parse import urlsplit

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
from ._http11 import Http11Pool, TransportError
from ._watchdog import RequestWatchdog
from .base import EventBatch, Exporter, RetryableExportError

if TYPE_CHECKING:
    from .._config import Settings

__all__ = ["StripeExporter"]

SESSION_PATH = "/v2/billing/meter_event_session"
STREAM_PATH = "/v2/billing/meter_event_stream"


_EVENT_PARAM = re.compile(r"events\[([0-9]{1,3})\]")


def _event_param(response: httpx.Response, count: int) -> tuple[Optional[str], Optional[int]]:
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
        self._stream_path = urlsplit(self._stream_url).path
        self._stream = self._new_stream()
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

    def _new_stream(self) -> Optional[Http11Pool]:
        """The lean stream client; None when batches go over httpx."""
        if self._settings.http2 or self._transport is not None:
            return None
        timeout = self._settings.request_timeout
        return Http11Pool(
            self._settings.stream_base,
            timeout=timeout,
            connect_timeout=min(timeout, 5.0),
            max_idle=self._settings.max_concurrent_requests + 1,
        )

    def stats(self) -> dict[str, int]:
        return {
            "sessions_opened": self.sessions.opened,
            "requests": self._requests + self.sessions.requests,
        }

    def export(self, events: EventBatch, batch_id: str = "") -> None:
        if self._closed:
            raise DeliveryError("the exporter was shut down", reason="shutdown")
        if self._stream is not None:
            self._send(events, batch_id, self._post_lean)
            return
        try:
            with self.watchdog.guard():
                self._send(events, batch_id, self._post_httpx)
        except RuntimeError:
            # httpx refuses to send on a client closed by shutdown() meanwhile.
            if self._closed:
                raise DeliveryError("the exporter was shut down", reason="shutdown") from None
            raise

    def _send(
        self,
        events: EventBatch,
        batch_id: str,
        post: Callable[[bytes, dict[str, str]], Optional[httpx.Response]],
    ) -> None:
        token = self.sessions.token()
        # Stripe-Version and Content-Type on the stream too, not only on sessions.
        headers = {**self._headers, "Authorization": f"Bearer {token}"}
        if batch_id:
            headers["Idempotency-Key"] = f"meterstream-{batch_id}"
        body = events.to_json()
        with self._lock:
            self._requests += 1
        response = post(body, headers)
        if response is not None:
            self._refused(events, token, response)

    def _post_lean(self, body: bytes, headers: dict[str, str]) -> Optional[httpx.Response]:
        """POST over the lean client: None for a 200, else the answer (as httpx's)."""
        assert self._stream is not None
        try:
            reply = self._stream.post(self._stream_path, body, headers)
        except TransportError as exc:
            if self._closed:
                raise DeliveryError("the exporter was shut down", reason="shutdown") from None
            raise RetryableExportError(f"sending meter events failed: {exc}") from None
        if reply.status == 200:
            return None
        return httpx.Response(reply.status, headers=reply.headers, content=reply.body)

    def _post_httpx(self, body: bytes, headers: dict[str, str]) -> Optional[httpx.Response]:
        try:
            response = self._http.post(
                self._stream_url,
                content=body,
                headers=headers,
                extensions={"trace": self.watchdog.trace},
            )
        except httpx.TransportError as exc:
            raise RetryableExportError(f"sending meter events failed: {exc!r}") from None
        return None if response.status_code == 200 else response

    def _refused(self, events: EventBatch, token: str, response: httpx.Response) -> None:
        """Sort an answer other than 200: rotate, retry, or refuse for good."""
        status = response.status_code
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
        param, index = _event_param(response, len(events))
        what = (
            f"event {index} of {len(events)} ({param})"
            if index is not None
            else f"{len(events)} meter event{'' if len(events) == 1 else 's'}"
        )
        raise DeliveryError(
            f"Stripe refused {what}: HTTP {status} {code or kind or ''}: {message}".strip(),
            reason="rejected",
            status=status,
            code=code,
            param=param,
            index=index,
        )

    def shutdown(self) -> None:
        self._closed = True
        self.watchdog.close()
        self._http.close()
        if self._stream is not None:
            self._stream.close()

    def after_fork_in_child(self) -> None:
        # The parent's sockets are shared with us: drop (never close) them.
        self._http = self._new_http()
        # The parent's connections are shared with us: drop the pool (never
        # close its sockets) for a new one.
        self._stream = self._new_stream()
        self.sessions.reset(self._http)
        self._requests = 0
        self._lock = threading.Lock()
