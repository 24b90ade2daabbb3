"""The Metronome exporter: batches of usage events to ``POST /v1/ingest``.

Over httpx, with the proxies and CA certificates the environment or the
settings name (:mod:`meterstream._exporters.network`), a deadline on each
request, and Metronome's answers sorted as its official SDK sorts them
(:mod:`._errors`): any 2xx is accepted, 408/409/429/5xx (or
``x-should-retry: true``) are retried after the wait the server asks for,
the rest are refused. A 400 names no event, so the delivery halves the batch
until the bad event is alone; an event past Metronome's 34-day window is set
aside before sending.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Optional

import httpx

from meterstream._exporters.base import EventBatch, Exporter, RetryableExportError
from meterstream._exporters.metronome._errors import (
    CANNOT_CANCEL,
    error_message,
    retry_after,
    retryable,
    should_retry,
)
from meterstream._exporters.metronome._wire import PAST_WINDOW, ingest_events, to_json
from meterstream._exporters.network import ca_source, proxy_for, ssl_context
from meterstream._version import __version__
from meterstream.errors import DeliveryError

if TYPE_CHECKING:
    from meterstream._config.settings import Settings

__all__ = ["INGEST_PATH", "MetronomeExporter"]

INGEST_PATH = "/v1/ingest"
#: Bodies of answers read at most (an error message, not a download).
_MAX_ANSWER = 64 * 1024


class MetronomeExporter(Exporter):
    """Sends batches to ``POST {metronome_base}/v1/ingest`` with the bearer token.

    Args:
        settings: the client's settings (``metronome_api_key``,
            ``metronome_base``, ``metronome_value_keys``, ``proxy``,
            ``ca_bundle``, ``request_timeout``, ``max_concurrent_requests``).
        transport: an httpx transport to use instead of the network (tests).
    """

    #: Metronome has no endpoint that withdraws or amends an ingested event.
    supports_cancel = False
    cancel_unsupported = CANNOT_CANCEL

    def __init__(
        self, settings: Settings, *, transport: Optional[httpx.BaseTransport] = None
    ) -> None:
        token = settings.metronome_api_key
        assert token, "the metronome exporter needs a metronome_api_key"
        self._settings = settings
        self._token = token
        self.max_concurrency: int = settings.max_concurrent_requests
        self._url = settings.metronome_base + INGEST_PATH
        self._transport = transport
        self._http = self._new_http()
        self._requests = 0
        self._lock = threading.Lock()
        self._closed = False

    def _new_http(self) -> httpx.Client:
        settings = self._settings
        timeout = settings.request_timeout
        tls = ssl_context(ca_source(settings.ca_bundle))  # ConfigurationError names ca_bundle
        route = None if self._transport is not None else proxy_for(self._url, settings.proxy)
        return httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(
                max_connections=self.max_concurrency + 1,
                max_keepalive_connections=self.max_concurrency + 1,
            ),
            proxy=None if route is None else route.for_httpx(tls),
            transport=self._transport,
            verify=tls,
            trust_env=False,
            headers={
                "Authorization": f"Bearer {self._token}",
                "Content-Type": "application/json",
                "Accept": "*/*",
                "User-Agent": f"meterstream/{__version__}",
            },
        )

    def _keys_for(self, event_name: str) -> tuple[str, str]:
        return self._settings.payload_keys_for(event_name)

    def _value_key_for(self, event_name: str) -> str:
        return self._settings.metronome_value_key_for(event_name)

    def stats(self) -> dict[str, int]:
        return {"requests": self._requests}

    def export(self, events: EventBatch, batch_id: str = "") -> None:
        if self._closed:
            raise DeliveryError("the exporter was shut down", reason="shutdown")
        self._set_aside_too_old(events)
        body = to_json(ingest_events(events, self._keys_for, self._value_key_for))
        with self._lock:
            self._requests += 1
        try:
            response = self._http.post(self._url, content=body)
        except httpx.TransportError as exc:
            if self._closed:
                raise DeliveryError("the exporter was shut down", reason="shutdown") from None
            raise RetryableExportError(
                f"sending usage events to Metronome failed: {exc!r}"
            ) from None
        except RuntimeError as exc:  # the client was closed by close() meanwhile
            if self._closed:
                raise DeliveryError("the exporter was shut down", reason="shutdown") from None
            raise RetryableExportError(f"sending usage events to Metronome failed: {exc}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        self._refused(events, response)

    def _set_aside_too_old(self, events: EventBatch) -> None:
        """An event past Metronome's window would sink its batch: refuse it alone."""
        stamps = events.timestamps()
        if not stamps:
            return
        cutoff = time.time() - PAST_WINDOW
        for i, stamp in enumerate(stamps):
            if stamp < cutoff:
                raise DeliveryError(
                    f"event {i} of {len(events)} is more than 34 days old, past what "
                    "Metronome accepts",
                    reason="rejected",
                    status=400,
                    code="timestamp_too_far_in_past",
                    index=i,
                )

    def _refused(self, events: EventBatch, response: httpx.Response) -> None:
        status = response.status_code
        message = error_message(response.content[:_MAX_ANSWER], self._token)
        verdict = should_retry(response.headers)
        if 300 <= status < 400:
            location = response.headers.get("location") or "(no Location)"
            raise RetryableExportError(
                f"Metronome's ingest endpoint {self._url} (metronome_base) answered {status} "
                f"redirect to {location}: check metronome_base or the proxy",
                status=status,
            )
        if retryable(status, verdict):
            raise RetryableExportError(
                f"Metronome answered HTTP {status}: {message}".strip(),
                retry_after=retry_after(response.headers),
                status=status,
            )
        if status in (401, 403):
            raise DeliveryError(
                f"Metronome refused the token ({status}: {message or 'no message'}). Check "
                "metronome_api_key / METRONOME_BEARER_TOKEN",
                reason="authentication",
                status=status,
            )
        count = len(events)
        raise DeliveryError(
            f"Metronome refused {count} usage event{'' if count == 1 else 's'}: "
            f"HTTP {status}: {message}",
            reason="rejected",
            status=status,
        )

    def close(self) -> None:
        self._closed = True
        self._http.close()

    def after_fork_in_child(self) -> None:
        # The parent's connections are shared with us: drop them, never close.
        self._http = self._new_http()
        self._requests = 0
        self._lock = threading.Lock()
