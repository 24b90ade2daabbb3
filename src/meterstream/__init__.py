"""meterstream: usage-based billing for Python, delivered to Stripe Meter Event Streams."""

from ._api import flush, handle_webhook, meter, metering, record, shutdown, stats
from ._call import Call
from ._client import MeterClient
from ._context import bind_context, current_customer, customer
from ._default import configure, get_client
from ._events import EventBatch
from ._exporters.base import Exporter, RetryableExportError
from ._metering import Usage
from ._signals import drain_on_sigterm
from ._version import __version__
from ._webhooks import ReportedError, ValidationReport
from .errors import (
    ConfigurationError,
    DeliveryError,
    InvalidEventError,
    MeterError,
    MissingCustomerError,
    WebhookError,
    WebhookSignatureError,
)

__all__ = [
    "Call",
    "ConfigurationError",
    "DeliveryError",
    "EventBatch",
    "Exporter",
    "InvalidEventError",
    "MeterClient",
    "MeterError",
    "MissingCustomerError",
    "ReportedError",
    "RetryableExportError",
    "Usage",
    "ValidationReport",
    "WebhookError",
    "WebhookSignatureError",
    "__version__",
    "bind_context",
    "configure",
    "current_customer",
    "customer",
    "drain_on_sigterm",
    "flush",
    "get_client",
    "handle_webhook",
    "meter",
    "metering",
    "record",
    "shutdown",
    "stats",
]
