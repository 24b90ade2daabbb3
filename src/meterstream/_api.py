"""The module-level API: the default client's methods as functions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar, Union

from meterstream._default import get_client
from meterstream._record.decorators import make_meter
from meterstream._record.metering import metering as _metering
from meterstream._truth.webhooks import DEFAULT_TOLERANCE, ValidationReport

if TYPE_CHECKING:
    from meterstream._client.client import MeterClient

__all__ = ["cancel", "flush", "handle_webhook", "meter", "metering", "record", "shutdown", "stats"]

_F = TypeVar("_F", bound=Callable[..., Any])


def meter(
    event_name: str,
    *,
    value: Any = 1,
    customer: Any = None,
    identifier: Any = None,
    dimensions: Optional[Mapping[str, str]] = None,
    on_error: str = "skip",
) -> Callable[[_F], _F]:
    """Decorate a function so that each successful call records one use.

    See :meth:`MeterClient.meter`; this one records through the default
    client, whichever it is when the function is called.

    Args:
        event_name: the Stripe meter's event name (1 to 100 characters).
        value: a number (int, float, ``Decimal``), or a callable taking the
            :class:`Call` and returning one; default 1.
        customer: a Stripe customer id, or a callable of the :class:`Call`;
            default the current :func:`customer`.
        identifier: a string or a callable of the :class:`Call`, for
            deterministic ids (e.g. a request id); default a generated one.
        dimensions: extra payload keys (meter dimensions), strings to strings.
        on_error: ``"skip"`` (a call that raises records nothing) or
            ``"record"`` (it records, with ``call.exception`` set).

    Returns:
        The decorator; the decorated function keeps its name, docstring,
        signature and ``inspect.iscoroutinefunction()``.

    Raises:
        InvalidEventError: at decoration time, a constant that Stripe would
            refuse (event name, value, customer, identifier, dimensions) or an
            unknown ``on_error``, named in the message.

    Example::

        @meterstream.meter("ai_search_api", value=lambda call: len(call.result))
        def search(query): ...
    """
    return make_meter(
        get_client,
        event_name,
        value=value,
        customer=customer,
        identifier=identifier,
        dimensions=dimensions,
        on_error=on_error,
    )


def metering(
    event_name: str,
    *,
    customer: Optional[str] = None,
    identifier: Optional[str] = None,
    dimensions: Optional[Mapping[str, str]] = None,
    on_error: str = "skip",
) -> _metering:
    """Meter a block of code (``with`` or ``async with``); see :meth:`MeterClient.metering`.

    Example::

        with meterstream.metering("gpu_seconds") as usage:
            usage.value = run_job()

    Args:
        event_name: the Stripe meter's event name.
        customer: default the current :func:`customer`.
        identifier: default a generated one.
        dimensions: extra payload keys, strings to strings.
        on_error: ``"skip"`` (a block that raises records nothing) or ``"record"``.

    Returns:
        A context manager (sync and async) yielding the :class:`Usage` to set:
        ``usage.value = ...`` or ``usage.add(...)``; left unset, the value is 1.
    """
    return _metering(
        get_client,
        event_name,
        customer=customer,
        identifier=identifier,
        dimensions=dimensions,
        on_error=on_error,
    )


def record(
    event_name: str,
    value: Any = 1,
    *,
    customer: Optional[str] = None,
    identifier: Optional[str] = None,
    dimensions: Optional[Mapping[str, str]] = None,
    timestamp: Any = None,
) -> Optional[str]:
    """Record one use now through the default client; see :meth:`MeterClient.record`.

    Args:
        event_name: the Stripe meter's event name.
        value: an int, float or ``Decimal``; at most 15 significant digits.
        customer: default the current :func:`customer`.
        identifier: default a generated one; give one to make retries of
            your own safe (Stripe dedupes an identifier for 24 hours).
        dimensions: extra payload keys, strings to strings.
        timestamp: when the use happened (an aware ``datetime`` or Unix
            seconds); default now. Stripe takes the past 35 days to 5 minutes ahead.

    Returns:
        The identifier of the event recorded (keep it to :func:`cancel` it),
        or None when nothing was recorded of its own (disabled, dropped,
        invalid, or aggregated).

    Raises:
        InvalidEventError: a field Stripe would refuse, named in the message
            (only with ``raise_errors=True``; otherwise counted and logged).
        MissingCustomerError: no customer, under ``on_missing_customer="raise"``.
    """
    return get_client().record(
        event_name,
        value,
        customer=customer,
        identifier=identifier,
        dimensions=dimensions,
        timestamp=timestamp,
    )


def cancel(identifier: str, event_name: str) -> Optional[str]:
    """Take back a recorded use through the default client; see :meth:`MeterClient.cancel`.

    Args:
        identifier: the event's identifier (what :func:`record` returned).
        event_name: the event's name.

    Returns:
        ``"withdrawn"`` (removed before it was sent), ``"queued"`` (to be
        cancelled at Stripe), or None when refused and ``raise_errors`` is off.

    Raises:
        CancelError: with ``raise_errors=True``, a cancellation that cannot be
            done (unknown identifier, accepted over 24 hours ago, aggregated,
            or a destination that cannot cancel).
    """
    return get_client().cancel(identifier, event_name)


def flush(timeout: Optional[float] = 5.0) -> bool:
    """Settle everything recorded so far through the default client.

    Args:
        timeout: seconds to wait; None waits as long as it takes.

    Returns:
        True when, within *timeout*, every event recorded before the call was
        settled: delivered, or refused and reported (``on_delivery_error``,
        ``stats()``). False at the timeout, e.g. while Stripe is unreachable.
    """
    return get_client().flush(timeout)


def shutdown(timeout: Optional[float] = None) -> bool:
    """Drain and stop the default client.

    Args:
        timeout: seconds to drain; default the ``shutdown_timeout`` setting.

    Returns:
        True when everything was settled before the client stopped.
    """
    return get_client().shutdown(timeout)


def stats() -> dict[str, Any]:
    """The default client's counters; see :meth:`MeterClient.stats`.

    Returns:
        A new dict of counters: ``recorded``, ``sent`` (accepted by Stripe
        only), ``dropped``, ``retried``, ``failed``, ``queued`` and the
        per-reason and per-exporter counts described in the configuration
        guide.
    """
    return get_client().stats()


def handle_webhook(
    body: Union[bytes, str],
    signature_header: Optional[str],
    *,
    secret: Optional[str] = None,
    client: Optional[MeterClient] = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Optional[ValidationReport]:
    """Handle one webhook request from Stripe (the body exactly as received).

    Verifies the signature, fetches the full event when the body is a thin
    one, and hands a meter error report to the client: counted in
    ``stats()``, moved to the spool's dead letters, passed to
    ``on_validation_error``. An event handled before (Stripe delivers at
    least once) and any other event type are acknowledged and ignored.

    Args:
        body: the raw request body, unparsed (the signature covers its bytes).
        signature_header: the ``Stripe-Signature`` header.
        secret: the endpoint's ``whsec_...`` secret; default the client's
            ``webhook_secret`` setting, else ``STRIPE_WEBHOOK_SECRET``.
        client: default the default client.
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
    target = get_client() if client is None else client
    return target.handle_webhook(body, signature_header, secret=secret, tolerance=tolerance)
