"""The public surface: ``meterstream.__all__`` is the documented API, and only that."""

from __future__ import annotations

import importlib

import pytest

import meterstream

#: The names SPEC.md §1 and §7 document, plus ``__version__``,
#: ``drain_on_sigterm`` (docs/delivery.md, "SIGTERM"), the webhook report
#: types and errors (docs/reconciliation.md), and the exporter protocol:
#: ``Exporter``, ``EventBatch``, ``RetryableExportError`` (docs/exporters.md).
DOCUMENTED = {
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
}


def test_all_is_sorted() -> None:
    assert meterstream.__all__ == sorted(meterstream.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(meterstream.__all__) == len(set(meterstream.__all__))


def test_all_equals_the_documented_public_names() -> None:
    assert set(meterstream.__all__) == DOCUMENTED


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_each_public_name_is_importable(name: str) -> None:
    module = importlib.import_module("meterstream")
    assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from meterstream import {name}", namespace)
    assert namespace[name] is getattr(meterstream, name)


def test_public_callables_and_classes_are_not_private_names() -> None:
    for name in meterstream.__all__:
        obj = getattr(meterstream, name)
        if name == "__version__":
            assert isinstance(obj, str) and obj
            continue
        assert not name.startswith("_")
        assert getattr(obj, "__module__", "").startswith("meterstream")


def test_every_exception_derives_from_meter_error() -> None:
    for exc in (
        meterstream.ConfigurationError,
        meterstream.InvalidEventError,
        meterstream.MissingCustomerError,
        meterstream.DeliveryError,
    ):
        assert issubclass(exc, meterstream.MeterError)
    assert issubclass(meterstream.MissingCustomerError, meterstream.InvalidEventError)
