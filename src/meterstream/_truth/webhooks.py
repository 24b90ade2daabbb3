"""Stripe's asynchronous error reports: verify, fetch, map back, report.

Stripe answers the meter event stream 200 ("received") and validates the
events afterwards; those in error are reported later as the thin events
``v1.billing.meter.error_report_triggered`` and
``v1.billing.meter.no_meter_found``, POSTed to webhook endpoints.
:func:`handle_webhook` is what such an endpoint calls: it checks the
``Stripe-Signature`` header, fetches the full event when it is thin, and
hands a typed :class:`ValidationReport` to the client, which counts it, moves
the named events to the spool's dead letters and calls
``on_validation_error``.

The signature check is the standard library's HMAC rather than
stripe-python's ``WebhookSignature``: it is fifteen lines, and depending on
stripe-python for them would pull a large SDK into every app that meters.
The tests check that both agree (stripe-python verifies what the emulator
signs, and this module verifies what stripe-python signs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import threading
import time
import weakref
from collections import OrderedDict
from typing import Any, Optional, Protocol, Union

from meterstream._config.settings import Settings
from meterstream._spool.spool import Spool
from meterstream.errors import ConfigurationError, WebhookError, WebhookSignatureError


class ReportTarget(Protocol):
    """What a webhook's report is handed to (``MeterClient`` implements it)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def spool(self) -> Optional[Spool]: ...

    def report_validation_errors(self, report: ValidationReport) -> None: ...


__all__ = [
    "ERROR_REPORT_TRIGGERED",
    "MAX_BODY_BYTES",
    "NO_METER_FOUND",
    "ReportedError",
    "ValidationReport",
    "handle_webhook",
    "parse_report",
    "verify_signature",
]

ERROR_REPORT_TRIGGERED = "v1.billing.meter.error_report_triggered"
NO_METER_FOUND = "v1.billing.meter.no_meter_found"
REPORT_TYPES = frozenset((ERROR_REPORT_TRIGGERED, NO_METER_FOUND))

#: Stripe's default tolerance for a signature's timestamp (stripe-python's
#: ``Webhook.DEFAULT_TOLERANCE``).
DEFAULT_TOLERANCE = 300
#: A thin event is a few hundred bytes and a full report a few tens of KB;
#: anything past this is refused before it is parsed.
MAX_BODY_BYTES = 1 << 20
#: Event ids remembered per client, so an event Stripe delivers twice is
#: handled once.
HANDLED_IDS = 10_000


@dataclasses.dataclass(frozen=True)
class ReportedError:
    """One kind of error in a report.

    Attributes:
        code: Stripe's code (``no_meter``, ``meter_event_no_customer_defined``,
            ``meter_event_invalid_value``, ``meter_event_customer_not_found``...).
        message: the first sample's message.
        error_count: how many events of the window had this error; Stripe may
            list fewer ``identifiers`` (it sends samples).
        identifiers: the identifiers of the events Stripe named.
    """

    code: str
    message: str
    error_count: int
    identifiers: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ValidationReport:
    """A Stripe error report, as ``on_validation_error`` receives it.

    Attributes:
        event_id: the Stripe event's id (``evt_...``).
        type: ``v1.billing.meter.error_report_triggered`` or
            ``v1.billing.meter.no_meter_found``.
        meter: the meter's id (``mtr_...``), None for ``no_meter_found``.
        validation_start, validation_end: the window the report covers (RFC 3339).
        summary: Stripe's ``developer_message_summary``.
        error_count: events reported in error in the window, all codes together.
        errors: one :class:`ReportedError` per code.
    """

    event_id: str
    type: str
    meter: Optional[str]
    validation_start: Optional[str]
    validation_end: Optional[str]
    summary: str
    error_count: int
    errors: tuple[ReportedError, ...]

    @property
    def identifiers(self) -> tuple[str, ...]:
        """Every identifier the report names, all codes together."""
        return tuple(i for e in self.errors for i in e.identifiers)


def verify_signature(
    body: bytes,
    header: Optional[str],
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: Optional[float] = None,
) -> None:
    """Check a ``Stripe-Signature`` header as Stripe specifies it.

    ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``; any ``v1``
    may match (several appear while a secret is rolled), compared in
    constant time; a timestamp older than *tolerance* seconds is refused.

    Raises:
        WebhookSignatureError: no header, no ``t`` or ``v1``, no match, or stale.
    """
    if not header:
        raise WebhookSignatureError("no Stripe-Signature header")
    timestamp: Optional[int] = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookSignatureError(
                    f"Stripe-Signature: t={value[:20]!r} is not a number"
                ) from None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise WebhookSignatureError("Stripe-Signature: needs t=... and at least one v1=...")
    signed = b"%d." % timestamp + body
    expected = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise WebhookSignatureError(
            "Stripe-Signature: no v1 signature matches this body and secret"
        )
    age = (time.time() if now is None else now) - timestamp
    if tolerance and age > tolerance:
        raise WebhookSignatureError(
            f"Stripe-Signature: timestamp is {int(age)} s old, past the {tolerance} s tolerance"
        )


def parse_report(event: dict[str, Any]) -> ValidationReport:
    """A :class:`ValidationReport` from a full ``v2.core.event`` of a report type.

    Raises:
        WebhookError: the event is not shaped as Stripe documents it.
    """
    try:
        data = event["data"]
        reason = data.get("reason") or {}
        errors = []
        for kind in reason.get("error_types") or []:
            samples = kind.get("sample_errors") or []
            identifiers = tuple(
                str(s["request"]["identifier"])
                for s in samples
                if isinstance(s.get("request"), dict) and s["request"].get("identifier")
            )
            message = next((str(s["error_message"]) for s in samples if s.get("error_message")), "")
            errors.append(
                ReportedError(
                    code=str(kind["code"]),
                    message=message,
                    error_count=int(kind.get("error_count", len(identifiers))),
                    identifiers=identifiers,
                )
            )
        related = event.get("related_object") or {}
        return ValidationReport(
            event_id=str(event["id"]),
            type=str(event["type"]),
            meter=related.get("id") if isinstance(related, dict) else None,
            validation_start=data.get("validation_start"),
            validation_end=data.get("validation_end"),
            summary=str(data.get("developer_message_summary") or ""),
            error_count=int(reason.get("error_count", sum(e.error_count for e in errors))),
            errors=tuple(errors),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WebhookError(
            f"event {event.get('id')!r}: not a meter error report ({exc!r})"
        ) from None


class _Handled:
    """The event ids one client has handled (bounded), and those in progress."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done: OrderedDict[str, None] = OrderedDict()
        self.busy: set[str] = set()

    def claim(self, event_id: str) -> bool:
        with self.lock:
            if event_id in self.done or event_id in self.busy:
                return False
            self.busy.add(event_id)
            return True

    def finish(self, event_id: str, handled: bool) -> None:
        with self.lock:
            self.busy.discard(event_id)
            if handled:
                self.done[event_id] = None
                while len(self.done) > HANDLED_IDS:
                    self.done.popitem(last=False)


_handled: weakref.WeakKeyDictionary[ReportTarget, _Handled] = weakref.WeakKeyDictionary()
_handled_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork() would stay held in the child.
    global _handled_lock
    _handled_lock = threading.Lock()
    for handled in list(_handled.values()):
        handled.lock = threading.Lock()
        handled.busy.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _handled_for(client: ReportTarget) -> _Handled:
    with _handled_lock:
        found = _handled.get(client)
        if found is None:
            found = _handled[client] = _Handled()
        return found


def handle_webhook(
    body: Union[bytes, str],
    signature_header: Optional[str],
    *,
    secret: Optional[str] = None,
    client: ReportTarget,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Optional[ValidationReport]:
    """Handle one webhook request from Stripe (the body exactly as received).

    Verifies the signature, fetches the full event when the body is a thin
    one, and hands a meter error report to ``client.report_validation_errors``
    (counted in ``stats()``, moved to the spool's dead letters, passed to
    ``on_validation_error``). An event handled before (Stripe delivers at
    least once) and any other event type are acknowledged and ignored.

    Args:
        body: the raw request body, unparsed (the signature covers its bytes).
        signature_header: the ``Stripe-Signature`` header.
        secret: the endpoint's ``whsec_...`` secret; default the client's
            ``webhook_secret`` setting, else ``STRIPE_WEBHOOK_SECRET``.
        client: the client the report goes to (``meterstream.handle_webhook``
            defaults to the default client).
        tolerance: oldest signature timestamp accepted, in seconds.

    Returns:
        The report handled, or None when there was nothing to do.

    Raises:
        WebhookSignatureError: a missing, forged or stale signature (answer 400).
        WebhookError: an oversized or malformed body (answer 400).
        ConfigurationError: no webhook secret is configured.
        DeliveryError: the full event could not be fetched (answer 5xx so
            Stripe retries).
    """
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    if len(raw) > MAX_BODY_BYTES:
        raise WebhookError(f"body: {len(raw)} bytes, larger than {MAX_BODY_BYTES}")
    secret = secret or client.settings.webhook_secret or os.environ.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        raise ConfigurationError(
            "webhook_secret: not set (or STRIPE_WEBHOOK_SECRET); it verifies Stripe's signatures"
        )
    verify_signature(raw, signature_header, secret, tolerance=tolerance)
    try:
        event = json.loads(raw)
    except (ValueError, RecursionError):
        raise WebhookError("body: not valid JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise WebhookError("body: not a Stripe event (no id)")
    if not isinstance(event.get("type"), str):
        raise WebhookError(f"body: event {event['id']!r} has no type")
    if event["type"] not in REPORT_TYPES:
        return None
    handled = _handled_for(client)
    event_id: str = event["id"]
    if not handled.claim(event_id):
        return None
    done = False
    spool = client.spool
    if spool is not None and not spool.claim_event(event_id):
        handled.finish(event_id, True)  # another process (or an earlier run) took it
        return None
    try:
        if "data" not in event:
            event = _fetch_event(client, event_id)
        report = parse_report(event)
        client.report_validation_errors(report)
        done = True
        return report
    finally:
        handled.finish(event_id, done)
        if spool is not None and not done:
            spool.release_event(event_id)


def _fetch_event(client: ReportTarget, event_id: str) -> dict[str, Any]:
    """``GET {api_base}/v2/core/events/{id}`` with the client's secret key."""
    from meterstream._exporters.stripe import StripeAPI

    settings = client.settings
    if not settings.api_key:
        raise ConfigurationError(
            "api_key: needed to fetch the full event of a thin webhook (GET /v2/core/events)"
        )
    with StripeAPI.from_settings(settings) as api:
        return api.core_event(event_id)
