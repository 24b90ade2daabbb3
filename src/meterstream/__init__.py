"""meterstream: usage-based billing for Python, delivered to Stripe Meter Event Streams."""

import meterstream._client.parallel  # noqa: F401  (makes MeterClient(destinations=[...]) a parallel run)
from meterstream._api import cancel, flush, handle_webhook, meter, metering, record, shutdown, stats
from meterstream._client.client import MeterClient
from meterstream._default import configure, get_client
from meterstream._exporters.base import Exporter, RetryableExportError
from meterstream._record.call import Call
from meterstream._record.context import bind_context, current_customer, customer
from meterstream._record.events import EventBatch
from meterstream._record.metering import Usage
from meterstream._signals import drain_on_sigterm
from meterstream._truth.webhooks import ReportedError, ValidationReport
from meterstream._version import __version__
from meterstream.errors import (
    CancelError,
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
    "CancelError",
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
    "cancel",
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
