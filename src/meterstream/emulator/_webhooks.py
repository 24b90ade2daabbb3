"""Webhook endpoints: the emulator's error reports POSTed and signed as Stripe does.

A daemon thread wakes every ``interval`` seconds (or when asked), runs the
asynchronous validation (``EmulatorState.validate``), and POSTs each new
thin event to every endpoint with a ``Stripe-Signature`` header:
``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the secret>``,
as stripe-python's ``WebhookSignature`` checks it. A delivery that fails (no
answer, or not 2xx) is retried with exponential backoff, up to
``max_attempts``, then kept as ``failed`` in the admin state. The thread runs
only while an endpoint exists, so the stream's hot path pays nothing
otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from meterstream.emulator._errors import bad_request
from meterstream.emulator._reports import thin_event


class ReportSource(Protocol):
    """What the sender reads from the emulator's state (``EmulatorState``),
    named here so that this module does not import the one that owns it."""

    @property
    def reported_count(self) -> int: ...

    @property
    def webhooks(self) -> WebhookSender: ...

    def validate(self) -> list[dict[str, Any]]: ...

    def reported_since(self, start: int) -> list[dict[str, Any]]: ...


if TYPE_CHECKING:
    import httpx


__all__ = ["WebhookSender", "sign"]

logger = logging.getLogger("meterstream.emulator")


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header value for *body*, as Stripe makes it."""
    signed = b"%d." % timestamp + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookSender:
    """Webhook endpoints, their deliveries, and the thread that makes them.

    Args:
        state: the emulator state whose reports are sent.
        interval: seconds between validation passes while an endpoint exists.
        max_attempts: POSTs per delivery before it is kept as failed.
        backoff: first retry delay in seconds (doubled each time, at most 60).
        timeout: seconds one POST may take.
        clock: the wall clock of the signatures' timestamps.
    """

    def __init__(
        self,
        state: ReportSource,
        *,
        interval: float = 1.0,
        max_attempts: int = 8,
        backoff: float = 0.5,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state = state
        self.interval = interval
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.timeout = timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._endpoints: dict[str, dict[str, Any]] = {}
        self._initial: list[tuple[str, str]] = []
        self._deliveries: list[dict[str, Any]] = []
        self._serial = 0
        self._cursor = 0  # reported events already turned into deliveries
        self._thread: Optional[threading.Thread] = None
        self._stopped = False

    # -- endpoints -------------------------------------------------------------

    def add(self, url: object, secret: object, *, initial: bool = False) -> dict[str, str]:
        """Send every report from now on to *url*, signed with *secret*.

        Raises:
            StripeError: a 400 naming the bad ``url`` or ``secret``.
        """
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise bad_request(f"url: must be an http(s) URL, got {url!r}", param="url")
        if not isinstance(secret, str) or not secret.startswith("whsec_") or len(secret) < 7:
            raise bad_request(
                "secret: must be a webhook signing secret starting 'whsec_'", param="secret"
            )
        with self._lock:
            self._serial += 1
            endpoint_id = f"we_emu{self._serial:06d}"
            # An endpoint receives the events generated after it was added.
            endpoint: dict[str, Any] = {
                "id": endpoint_id,
                "url": url,
                "secret": secret,
                "since": self._state.reported_count,
            }
            self._endpoints[endpoint_id] = endpoint
            if initial:
                self._initial.append((url, secret))
            self._start()
        return {"id": endpoint_id, "url": url}

    def remove(self, endpoint_id: str) -> bool:
        with self._lock:
            return self._endpoints.pop(endpoint_id, None) is not None

    def reset(self) -> None:
        """Forget deliveries; endpoints back to those given at start."""
        with self._lock:
            self._deliveries.clear()
            self._endpoints.clear()
            self._cursor = 0
            initial, self._initial = self._initial, []
        for url, secret in initial:
            self.add(url, secret, initial=True)

    def snapshot(self) -> dict[str, Any]:
        """Endpoints (without secrets) and deliveries, for the admin API."""
        with self._lock:
            return {
                "endpoints": [{"id": e["id"], "url": e["url"]} for e in self._endpoints.values()],
                "deliveries": [
                    {k: v for k, v in d.items() if k not in ("body", "secret")}
                    for d in self._deliveries
                ],
            }

    def recent(self, limit: int) -> dict[str, Any]:
        """For the page: how many endpoints, deliveries by status, the newest *limit*."""
        with self._lock:
            by_status: dict[str, int] = {}
            for d in self._deliveries:
                by_status[d["status"]] = by_status.get(d["status"], 0) + 1
            newest = [
                {k: v for k, v in d.items() if k not in ("body", "secret", "_due")}
                for d in reversed(self._deliveries[-limit:])
            ]
            return {"endpoints": len(self._endpoints), "by_status": by_status, "recent": newest}

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery: ``event``, ``type``, ``url``, ``status`` (pending, delivered,
        failed), ``attempts``, ``last_status`` (HTTP status or None), ``last_error``."""
        return list(self.snapshot()["deliveries"])

    # -- the thread ------------------------------------------------------------

    def poke(self) -> None:
        """Run a validation pass and due deliveries now rather than at the next tick."""
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopped = False
            self._thread = threading.Thread(
                target=self._run, name="meterstream-emulator-webhooks", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout, trust_env=False) as http:
            while not self._stopped:
                try:
                    self._pass(http)
                except Exception:  # pragma: no cover - a bug must not end the thread
                    logger.exception("webhook pass failed")
                self._wake.wait(self._next_wait())
                self._wake.clear()

    def _next_wait(self) -> float:
        now = time.monotonic()
        with self._lock:
            due = [d["_due"] for d in self._deliveries if d["status"] == "pending"]
        wait = self.interval
        if due:
            wait = min(wait, max(0.0, min(due) - now))
        return wait

    def _pass(self, http: httpx.Client) -> None:
        with self._lock:
            idle = not self._endpoints and all(d["status"] != "pending" for d in self._deliveries)
        if idle:  # no endpoint left: validating would cost the stream for nothing
            return
        self._state.validate()
        now = time.monotonic()
        with self._lock:
            start = self._cursor
            events = self._state.reported_since(start)
            self._cursor = start + len(events)
            endpoints = list(self._endpoints.values())
            for position, event in enumerate(events, start):
                thin = thin_event(event)
                body = json.dumps(thin, separators=(",", ":")).encode()
                for endpoint in endpoints:
                    if position < endpoint["since"]:
                        continue
                    self._deliveries.append(
                        {
                            "event": event["id"],
                            "type": event["type"],
                            "endpoint": endpoint["id"],
                            "url": endpoint["url"],
                            "status": "pending",
                            "attempts": 0,
                            "last_status": None,
                            "last_error": None,
                            "body": body,
                            "secret": endpoint["secret"],
                            "_due": now,
                        }
                    )
            due = [d for d in self._deliveries if d["status"] == "pending" and d["_due"] <= now]
        for delivery in due:
            if self._stopped:
                return
            self._deliver(http, delivery)

    def _deliver(self, http: httpx.Client, delivery: dict[str, Any]) -> None:
        body: bytes = delivery["body"]
        header = sign(body, delivery["secret"], int(self.clock()))
        status: Optional[int] = None
        error: Optional[str] = None
        try:
            response = http.post(
                delivery["url"],
                content=body,
                headers={
                    "Content-Type": "application/json; charset=utf-8",
                    "Stripe-Signature": header,
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                },
            )
            status = response.status_code
        except Exception as exc:  # any failure to get an answer is retried
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            delivery["attempts"] += 1
            delivery["last_status"] = status
            delivery["last_error"] = error
            if status is not None and 200 <= status < 300:
                delivery["status"] = "delivered"
            elif delivery["attempts"] >= self.max_attempts:
                delivery["status"] = "failed"
                logger.warning(
                    "webhook %s to %s failed %d times; kept as failed",
                    delivery["event"],
                    delivery["url"],
                    delivery["attempts"],
                )
            else:
                delay = min(60.0, self.backoff * 2 ** (delivery["attempts"] - 1))
                delivery["_due"] = time.monotonic() + delay


# -- the command line ----------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--webhook URL`` (repeatable), ``--webhook-secret``, ``--validation-interval``."""
    group = parser.add_argument_group("webhooks (asynchronous validation reports)")
    group.add_argument(
        "--webhook",
        action="append",
        dest="webhooks",
        default=[],
        metavar="URL",
        help="POST signed error reports (thin events) to this URL (repeatable)",
    )
    group.add_argument(
        "--webhook-secret",
        metavar="WHSEC",
        help="the whsec_... secret that signs them (required with --webhook)",
    )
    group.add_argument(
        "--validation-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often accepted events are validated and reported (default 1)",
    )


def configure_from_args(
    parser: argparse.ArgumentParser, args: argparse.Namespace, state: ReportSource
) -> None:
    """Apply the webhook flags to *state*; a mistake is a usage error naming the flag."""
    interval = args.validation_interval
    if not (0 < interval <= 3600):
        parser.error(f"argument --validation-interval: {interval} is not in (0, 3600]")
    state.webhooks.interval = interval
    secret = args.webhook_secret
    if args.webhooks and not secret:
        parser.error("argument --webhook: needs --webhook-secret whsec_...")
    if secret is not None and not (secret.startswith("whsec_") and len(secret) > 6):
        parser.error(f"argument --webhook-secret: {secret[:10]!r}... does not start 'whsec_'")
    for url in args.webhooks:
        if not url.startswith(("http://", "https://")):
            parser.error(f"argument --webhook: {url!r} is not an http(s) URL")
    for url in args.webhooks:
        state.webhooks.add(url, secret, initial=True)
