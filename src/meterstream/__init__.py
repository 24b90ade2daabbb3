"""meterstream: usage-based billing for Python, delivered to Stripe Meter Event Streams."""

from ._api import flush, meter, metering, record, shutdown, stats
from ._call import Call
from ._client import MeterClient
from ._context import bind_context, current_customer, customer
from ._default import configure, get_client
from ._metering import Usage
from ._signals import drain_on_sigterm
from ._version import __version__
from .errors import (
    ConfigurationError,
    DeliveryError,
    InvalidEventError,
    MeterError,
    MissingCustomerError,
)

__all__ = [
    "Call",
    "ConfigurationError",
    "DeliveryError",
    "InvalidEventError",
    "MeterClient",
    "MeterError",
    "MissingCustomerError",
    "Usage",
    "__version__",
    "bind_context",
    "configure",
    "current_customer",
    "customer",
    "drain_on_sigterm",
    "flush",
    "get_client",
    "meter",
    "metering",
    "record",
    "shutdown",
    "stats",
]
