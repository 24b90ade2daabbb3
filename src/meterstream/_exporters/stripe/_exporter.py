"""The Stripe exporter: Meter Event Streams v2 over keep-alive connections.

Sessions and batches go over :mod:`._http11`, a small HTTP/1.1 client that
costs the app's threads a tenth of httpx's CPU per request and bounds a whole
request (deadline, answer size), directly or through an ``http://`` proxy
(``CONNECT`` tunnels, absolute-form requests); over httpx, with
:mod:`._watchdog` for the deadline and the same answer bound, when ``http2``
is on, a transport is given, or the proxy is an ``https://`` one.
:mod:`._sessions` keeps the session token, :mod:`._errors` reads Stripe's
answers, and :mod:`meterstream._exporters.network` says which proxy and CA
certificates apply, as requests and httpx would.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import urlsplit

import httpx

from meterstream._exporters.base import EventBatch, Exporter, RetryableExportError
from meterstream._exporters.network import CaSource, ProxyRoute, ca_source, proxy_for, ssl_context
from meterstream._exporters.stripe._api import StripeAPI
from meterstream._exporters.stripe._errors import (
    certificate_failure,
    error_fields,
    event_param,
    retry_after,
    retryable,
    should_retry,
)
from meterstream._exporters.stripe._http11 import (
    MAX_BODY,
    CertificateError,
    Http11Pool,
    ProxyError,
    Reply,
    TransportError,
)
from meterstream._exporters.stripe._sessions import SessionManager
from meterstream._exporters.stripe._watchdog import RequestWatchdog
from meterstream._internal import RateLimitedLog, logger
from meterstream._otel import untraced
from meterstream._version import __version__
from meterstream.errors import DeliveryError

if TYPE_CHECKING:
    from meterstream._config.settings import Settings

__all__ = ["StripeExporter"]

SESSION_PATH = "/v2/billing/meter_event_session"
STREAM_PATH = "/v2/billing/meter_event_stream"
ADJUSTMENTS_PATH = "/v2/billing/meter_event_adjustments"


class StripeExporter(Exporter):
    """Sends batches to ``POST {stream_base}/v2/billing/meter_event_stream``.

    Opens and rotates meter event sessions with the secret key, sends each
    batch with a stable ``Idempotency-Key`` (the batch id, the same on every
    retry), and sorts Stripe's answers into accepted (any 2xx), worth retrying
    (:class:`RetryableExportError`) and refused (:class:`DeliveryError`).
    Cancels delivered events with meter event adjustments (:meth:`cancel`).
    """

    #: Stripe's meter event adjustments cancel an event within 24 hours.
    supports_cancel = True

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
        self.max_concurrency: int = settings.max_concurrent_requests
        self._headers = {
            "Stripe-Version": settings.stripe_version,
            "User-Agent": f"meterstream/{__version__}",
            "Content-Type": "application/json",
        }
        self._session_url = settings.api_base + SESSION_PATH
        self._session_path = urlsplit(self._session_url).path
        self._stream_url = settings.stream_base + STREAM_PATH
        self._stream_path = urlsplit(self._stream_url).path
        self._adjustments_url = settings.api_base + ADJUSTMENTS_PATH
        # Read once: the environment of the process when the client was made.
        self._proxies = {
            url: proxy_for(url, settings.proxy) for url in (settings.api_base, settings.stream_base)
        }
        self._ca: CaSource = ca_source(settings.ca_bundle)
        self._tls = ssl_context(self._ca)  # ConfigurationError names ca_bundle
        self._reported: set[str] = set()
        self._http = self._new_http()
        self._session_pool, self._stream = self._new_pools()
        extra = {} if clock is None else {"clock": clock}
        self.sessions = SessionManager(
            self._post_session,
            settings.api_key,
            self._headers,
            **extra,  # type: ignore[arg-type]
        )
        self._requests = 0
        self._log = RateLimitedLog()
        self._lock = threading.Lock()
        self._closed = False

    # -- clients --------------------------------------------------------------------

    def _new_http(self) -> httpx.Client:
        timeout = self._settings.request_timeout
        self.watchdog = RequestWatchdog(timeout)
        limits = httpx.Limits(
            max_connections=self._settings.max_concurrent_requests + 1,
            max_keepalive_connections=self._settings.max_concurrent_requests + 1,
        )
        mounts: dict[str, httpx.BaseTransport] = {}
        if self._transport is None:
            for base, route in self._proxies.items():
                if route is not None:
                    parts = urlsplit(base)
                    pattern = f"all://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
                    mounts[pattern] = httpx.HTTPTransport(
                        # An https:// proxy is verified with the same CA certificates.
                        proxy=route.for_httpx(self._tls),
                        verify=self._tls,
                        http2=self._settings.http2,
                        limits=limits,
                        trust_env=False,
                    )
        return httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=limits,
            http2=self._settings.http2,
            transport=self._transport,
            mounts=mounts or None,
            verify=self._tls,
            trust_env=False,
        )

    def _new_pools(self) -> tuple[Optional[Http11Pool], Optional[Http11Pool]]:
        """The lean clients of the session and stream endpoints; None: over httpx."""
        stream = self._new_pool(self._settings.stream_base, self.max_concurrency + 1)
        if stream is not None and _origin(self._settings.api_base) == _origin(
            self._settings.stream_base
        ):
            return stream, stream
        return self._new_pool(self._settings.api_base, 1), stream

    def _new_pool(self, base: str, max_idle: int) -> Optional[Http11Pool]:
        route = self._proxies[base]
        if self._settings.http2 or self._transport is not None:
            return None
        if route is not None and route.is_tls:
            return None  # TLS to the proxy and TLS inside it: httpx does that
        timeout = self._settings.request_timeout
        return Http11Pool(
            base,
            timeout=timeout,
            connect_timeout=min(timeout, 5.0),
            max_idle=max_idle,
            ssl_context=self._tls,
            proxy=None if route is None else route.for_lean(),
        )

    def stats(self) -> dict[str, int]:
        return {
            "sessions_opened": self.sessions.opened,
            "requests": self._requests + self.sessions.requests,
        }

    def meters(self) -> list[dict[str, Any]]:
        """Stripe's meters, read with this exporter's key, bases, proxy and CA bundle.

        Makes the exporter a source of meters (``_aggregate.meters.MetersSource``):
        a client checks against them that the event names it aggregates sum.

        Raises:
            DeliveryError: Stripe could not be reached, or refused the request.
        """
        with untraced(), StripeAPI.from_settings(self._settings) as api:
            return api.meters()

    # -- sending --------------------------------------------------------------------

    def export(self, events: EventBatch, batch_id: str = "") -> None:
        if self._closed:
            raise DeliveryError("the exporter was shut down", reason="shutdown")
        try:
            self._send(events, batch_id)
        except RuntimeError as exc:
            # httpx refuses to send on a client closed by close() meanwhile,
            # or replaced after a certificate failure (_renew_http).
            if self._closed:
                raise DeliveryError("the exporter was shut down", reason="shutdown") from None
            if "closed" in str(exc):
                raise RetryableExportError(f"sending meter events failed: {exc}") from None
            raise

    def _send(self, events: EventBatch, batch_id: str) -> None:
        token = self.sessions.token()
        # Stripe-Version and Content-Type on the stream too, not only on sessions.
        headers = {**self._headers, "Authorization": f"Bearer {token}"}
        if batch_id:
            headers["Idempotency-Key"] = f"meterstream-{batch_id}"
        body = events.to_json()
        with self._lock:
            self._requests += 1
        if self._stream is not None:
            response = self._post_lean(body, headers)
        else:
            response = self._post_httpx(self._stream_url, body, headers, "sending meter events")
            if 200 <= response.status_code < 300:
                return
        if response is not None:
            self._redirected(response, "stream", "stream_base")
            self._refused(events, token, response)

    def _post_lean(self, body: bytes, headers: dict[str, str]) -> Optional[httpx.Response]:
        """POST over the lean client: None for a 2xx, else the answer (as httpx's)."""
        assert self._stream is not None
        reply = self._lean(self._stream, self._stream_path, body, headers, "sending meter events")
        if 200 <= reply.status < 300:
            return None
        return httpx.Response(reply.status, headers=reply.headers, content=reply.body)

    def _post_session(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """The session request, over the lean client or httpx; 3xx reported here."""
        what = "opening a meter event session"
        if self._session_pool is not None:
            reply = self._lean(self._session_pool, self._session_path, body, headers, what)
            response = httpx.Response(reply.status, headers=reply.headers, content=reply.body)
        else:
            response = self._post_httpx(self._session_url, body, headers, what)
        self._redirected(response, "session", "api_base")
        return response

    def _lean(
        self, pool: Http11Pool, path: str, body: bytes, headers: dict[str, str], what: str
    ) -> Reply:
        try:
            return pool.post(path, body, headers)
        except TransportError as exc:
            if self._closed:
                raise DeliveryError("the exporter was shut down", reason="shutdown") from None
            if isinstance(exc, CertificateError):
                self._certificate_problem("{}://{}:{}".format(*_origin(pool.base_url)), str(exc))
            if isinstance(exc, ProxyError):
                self._proxy_problem(pool.base_url, exc)
            raise RetryableExportError(f"{what} failed: {exc}") from None

    def _post_httpx(
        self, url: str, body: bytes, headers: dict[str, str], what: str
    ) -> httpx.Response:
        try:
            with (
                self.watchdog.guard(),
                self._http.stream(
                    "POST",
                    url,
                    content=body,
                    headers=headers,
                    extensions={"trace": self.watchdog.trace},
                ) as response,
            ):
                # The lean client's bound on an answer, here too: read no
                # more than MAX_BODY (after decoding), whatever is announced.
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_BODY:
                    raise RetryableExportError(
                        f"{what}: the answer's body is too large ({declared} bytes)",
                        status=response.status_code,
                    )
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_BODY:
                        raise RetryableExportError(
                            f"{what}: the answer's body is too large (over {MAX_BODY} bytes)",
                            status=response.status_code,
                        )
                    chunks.append(chunk)
                kept = [
                    (name, value)
                    for name, value in response.headers.multi_items()
                    if name not in ("content-encoding", "content-length", "transfer-encoding")
                ]
                return httpx.Response(response.status_code, headers=kept, content=b"".join(chunks))
        except httpx.TransportError as exc:
            if self._closed:
                raise DeliveryError("the exporter was shut down", reason="shutdown") from None
            failure = certificate_failure(exc)
            if failure is not None:
                # httpcore keeps a tunnel whose TLS handshake failed in its
                # pool, busy for ever: a few such and every request is a
                # PoolTimeout that no longer says why. A new client instead.
                self._renew_http()
                self._certificate_problem("{}://{}:{}".format(*_origin(url)), str(failure))
            if isinstance(exc, httpx.ProxyError):
                self._proxy_problem(url, exc)
            raise RetryableExportError(f"{what} failed: {exc!r}") from None

    def _renew_http(self) -> None:
        with self._lock:
            if self._closed:
                return
            old, old_watchdog = self._http, self.watchdog
            self._http = self._new_http()
        old_watchdog.close()
        old.close()

    # -- cancelling ---------------------------------------------------------------------

    def cancel(self, event_name: str, identifier: str, request_id: str = "") -> None:
        """``POST {api_base}/v2/billing/meter_event_adjustments`` with the secret key.

        Stripe accepts a cancellation only within 24 hours of receiving the
        event; past that, or for an identifier it does not know, it refuses
        (:class:`DeliveryError`, reason ``"rejected"``, with Stripe's code).
        """
        if self._closed:
            raise DeliveryError("the exporter was shut down", reason="shutdown")
        body = json.dumps(
            {"event_name": event_name, "type": "cancel", "cancel": {"identifier": identifier}},
            separators=(",", ":"),
        ).encode()
        headers = {**self._headers, "Authorization": f"Bearer {self._settings.api_key}"}
        if request_id:
            headers["Idempotency-Key"] = f"meterstream-cancel-{request_id}"
        with self._lock:
            self._requests += 1
        what = f"cancelling meter event {identifier!r}"
        try:
            response = self._post_httpx(self._adjustments_url, body, headers, what)
        except RuntimeError as exc:  # a client closed or replaced meanwhile
            if self._closed:
                raise DeliveryError("the exporter was shut down", reason="shutdown") from None
            raise RetryableExportError(f"{what} failed: {exc}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        self._redirected(response, "adjustments", "api_base")
        kind, code, message = error_fields(response, self._settings.api_key)
        if retryable(status, should_retry(response)):
            raise RetryableExportError(
                f"{what}: HTTP {status} {code or kind or ''} {message}".strip(),
                retry_after=retry_after(response.headers),
                status=status,
            )
        raise DeliveryError(
            f"Stripe refused to cancel meter event {identifier!r} ({event_name}): "
            f"HTTP {status} {code or kind or ''}: {message}".strip(),
            reason="authentication" if status == 401 else "rejected",
            status=status,
            code=code,
        )

    # -- configuration problems: kept, retried, reported once ---------------------------

    def _report_once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._reported:
                return
            self._reported.add(key)
        logger.error("%s", message)

    def _redirected(self, response: httpx.Response, endpoint: str, setting: str) -> None:
        """A 3xx: a base or a proxy set wrong. Never followed (the secret key
        would go where it points); the batch is kept and retried with backoff,
        so nothing is lost once the setting is fixed."""
        status = response.status_code
        if not 300 <= status < 400:
            return
        location = response.headers.get("location") or "(no Location)"
        url = self._session_url if endpoint == "session" else self._stream_url
        self._report_once(
            f"redirect {endpoint} {status} {location}",
            f"the {endpoint} endpoint {url} ({setting}) answered {status} "
            f"redirect to {location}: check api_base/stream_base or the proxy; "
            "the events are kept and retried",
        )
        raise RetryableExportError(
            f"the {endpoint} endpoint answered {status} redirect to {location} "
            "(check api_base/stream_base or the proxy)",
            status=status,
        )

    def _certificate_problem(self, origin: str, detail: str) -> None:
        route = self._route_of(origin)
        via = f" through the proxy {route.shown} ({route.source})" if route is not None else ""
        message = (
            f"TLS to {origin}{via} failed: {detail}. The CA certificates come from "
            f"{self._ca.describe()}: set ca_bundle (METERSTREAM_CA_BUNDLE) to the PEM file "
            "of the CA that signs this server's certificate"
        )
        self._report_once(f"tls {origin}", f"{message}; the events are kept and retried")
        raise RetryableExportError(message)

    def _proxy_problem(self, url: str, exc: Exception) -> None:
        route = self._route_of(url)
        shown = f"{route.shown} ({route.source})" if route is not None else "the proxy"
        self._report_once(
            f"proxy {url} {exc}",
            f"the proxy {shown} failed a request to {url}: {exc}. Check proxy / "
            "HTTPS_PROXY / NO_PROXY; the events are kept and retried",
        )

    def _route_of(self, url: str) -> Optional[ProxyRoute]:
        for base, route in self._proxies.items():
            if _origin(base) == _origin(url):
                return route
        return None

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
        if retryable(status, verdict):
            raise RetryableExportError(
                f"HTTP {status} {code or kind or ''} {message}".strip(),
                retry_after=retry_after(response.headers),
                status=status,
            )
        param, index = event_param(response, len(events))
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

    def close(self) -> None:
        self._closed = True
        self.watchdog.close()
        self._http.close()
        # Aborts requests in flight, a session being opened included.
        for pool in {self._session_pool, self._stream}:
            if pool is not None:
                pool.close()

    def after_fork_in_child(self) -> None:
        # The parent's connections are shared with us: drop (never close)
        # them, for new clients.
        self._http = self._new_http()
        self._session_pool, self._stream = self._new_pools()
        self.sessions.reset()
        self._requests = 0
        self._lock = threading.Lock()


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or ""), parts.port or (443 if scheme == "https" else 80)
