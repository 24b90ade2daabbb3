"""Exceptions raised by meterstream.

Every exception the library raises on purpose derives from :class:`MeterError`,
so ``except meterstream.MeterError`` catches them all and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

__all__ = [
    "CancelError",
    "ConfigurationError",
    "DeliveryError",
    "InvalidEventError",
    "MeterError",
    "MissingCustomerError",
    "WebhookError",
    "WebhookSignatureError",
]


class MeterError(Exception):
    """Base class of every error meterstream raises."""


class ConfigurationError(MeterError, ValueError):
    """A setting has a wrong name or value.

    The message names the setting (or environment variable) and what it accepts.
    """


class InvalidEventError(MeterError, ValueError):
    """An event would be refused by Stripe, so it was not queued.

    Attributes:
        field: the event field at fault (``"value"``, ``"event_name"`` ...).
        value: the offending value, or None when there is none to show.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}: {reason} (got {short_repr(value)})")


class MissingCustomerError(InvalidEventError):
    """No customer was given and none is set in the current context."""

    def __init__(self, event_name: str) -> None:
        super().__init__(
            "customer",
            None,
            f"no customer for event {event_name!r}: pass customer=..., or wrap the call "
            "in `with meterstream.customer(...)`",
        )
        self.event_name = event_name


class DeliveryError(MeterError):
    """Events could not be delivered to Stripe.

    Handed to ``on_delivery_error`` with the events it concerns.

    Attributes:
        reason: ``"rejected"`` (Stripe refused the batch), ``"retries_exhausted"``,
            ``"authentication"`` (the secret key was refused) or ``"shutdown"``.
        status: the HTTP status of the last answer, when there was one.
        code: Stripe's error ``code``, when there was one.
        param: Stripe's error ``param`` (e.g. ``"events[3].timestamp"``), when
            there was one.
        index: the position in the request of the event Stripe named in
            ``param`` (``events[3]...`` is 3), when it named one.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.code = code
        self.param = param
        self.index = index


class CancelError(MeterError, ValueError):
    """A cancellation that cannot be done, refused at the call.

    Raised by ``cancel()`` when ``raise_errors=True`` (else counted in
    ``stats()`` as ``cancel_refused`` and logged); the message says why and
    what to do instead.

    Attributes:
        reason: ``"unknown"`` (no event with that identifier was recorded, as
            far as this client or its spool can know), ``"too_old"`` (Stripe
            accepted it more than 24 hours ago), ``"aggregated"`` (the event
            name is aggregated: its uses have no event of their own),
            ``"unsupported"`` (the destination has no way to cancel) or
            ``"invalid"`` (a bad identifier or event name).
        identifier: the identifier asked for.
        event_name: the event name asked for.
        outcomes: in a parallel run (``destinations``), what happened at each
            destination, by name: ``"withdrawn"``, ``"queued"``, ``"refused"``,
            or ``"not_held"`` (its spool never held the event); the
            cancellations that could be made were made. Empty with one
            destination.
        refusals: in a parallel run, each refusing destination's own
            ``CancelError``, by name (``reason`` is the first one's).
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        identifier: Any,
        event_name: Any,
        outcomes: Optional[Mapping[str, str]] = None,
        refusals: Optional[Mapping[str, CancelError]] = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.identifier = identifier
        self.event_name = event_name
        self.outcomes: dict[str, str] = dict(outcomes or {})
        self.refusals: dict[str, CancelError] = dict(refusals or {})


class WebhookError(MeterError, ValueError):
    """A webhook request that is not a Stripe event meterstream can read
    (oversized, not JSON, not shaped as Stripe documents); answer it 400."""


class WebhookSignatureError(WebhookError):
    """A webhook's ``Stripe-Signature`` is missing, forged, or older than the
    tolerance; answer it 400."""


def short_repr(value: Any, limit: int = 80) -> str:
    """A short repr of anything, even of an object whose ``repr()`` raises.

    Error messages about bad input are built from that input: a hostile or
    broken ``__repr__`` must not turn our error into another one.
    """
    kind = type(value)
    if kind is int and value.bit_length() > 256:
        # Too many digits to write out (Python refuses past 4,300 anyway).
        return f"<int of {int(value.bit_length() * 0.30103) + 1} digits>"
    if kind is str and len(value) > limit:
        value = value[:limit]
    try:
        text = repr(value)
        if type(text) is not str:  # pragma: no cover - repr() checks this itself
            raise TypeError("__repr__ returned a non-string")
    except Exception:
        return safe_type_name(value, "<unprintable {}>")
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def safe_type_name(value: Any, template: str = "{}") -> str:
    """The name of *value*'s type, in *template*; never raises."""
    try:
        name = type(value).__name__
        if type(name) is not str:
            name = "object"
    except Exception:
        name = "object"
    return template.format(name)
