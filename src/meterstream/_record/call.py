"""One ``meter()`` decoration, checked once, and the ``Call`` its callables see."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Callable, Optional

from meterstream._record.checks import (
    check_customer,
    check_dimensions,
    check_event_name,
    check_identifier,
    check_on_error,
    check_value,
)
from meterstream._record.context import CUSTOMER
from meterstream._record.recorder import Recorder
from meterstream.errors import InvalidEventError, short_repr

__all__ = ["Call", "MeterSpec", "customer_at_call_start"]

perf_counter = time.perf_counter


class Call:
    """What a ``value=``, ``customer=`` or ``identifier=`` callable is given.

    Attributes:
        args: positional arguments of the call (without ``self``/``cls``).
        kwargs: keyword arguments of the call.
        instance: the bound ``self`` or ``cls``, or None for plain functions.
        result: the return value (for generators, their return value; for
            ``metering()`` blocks, None).
        elapsed: seconds the call took (for generators: until exhausted or closed).
        exception: the exception the call raised, or None.
        items: for generators, how many items were yielded; otherwise 0.
    """

    __slots__ = ("args", "elapsed", "exception", "instance", "items", "kwargs", "result")

    def __init__(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        instance: Any = None,
        result: Any = None,
        elapsed: float = 0.0,
        exception: Optional[BaseException] = None,
        items: int = 0,
    ) -> None:
        self.args = args
        self.kwargs = kwargs
        self.instance = instance
        self.result = result
        self.elapsed = elapsed
        self.exception = exception
        self.items = items

    def __repr__(self) -> str:
        return (
            f"Call(args={self.args!r}, kwargs={self.kwargs!r}, result={self.result!r}, "
            f"elapsed={self.elapsed:.6f}, exception={self.exception!r})"
        )


class MeterSpec:
    """One ``meter()`` decoration, validated once at decoration time."""

    __slots__ = (
        "customer",
        "customer_fn",
        "dimensions",
        "event_name",
        "identifier",
        "identifier_fn",
        "on_error",
        "simple",
        "value",
        "value_fn",
    )

    def __init__(
        self,
        event_name: str,
        value: Any,
        customer: Any,
        identifier: Any,
        dimensions: Optional[Mapping[str, str]],
        on_error: str,
    ) -> None:
        self.event_name = check_event_name(event_name)
        self.value_fn = value if callable(value) else None
        # "is None", never truth: a callable object's __bool__ is not ours to call.
        self.value = check_value(value) if self.value_fn is None else None
        self.customer_fn = customer if callable(customer) else None
        self.customer: Optional[str] = None
        if customer is not None and self.customer_fn is None:
            self.customer = check_customer(customer)
        self.identifier_fn = identifier if callable(identifier) else None
        self.identifier = (
            check_identifier(identifier)
            if identifier is not None and self.identifier_fn is None
            else None
        )
        self.dimensions = check_dimensions(dimensions)
        self.on_error = check_on_error(on_error)
        # Nothing to compute from the call: the wrapper skips timing and Call.
        self.simple = (
            self.value_fn is None and self.customer_fn is None and (self.identifier_fn is None)
        )

    def finish(
        self,
        client: Recorder,
        context_customer: Optional[str],
        call: Optional[Call],
    ) -> None:
        """Record one use of the decorated function. Never raises unless asked to."""
        if call is None:
            client.record_use(
                self.event_name,
                self.value,
                self.customer or context_customer,
                self.identifier,
                self.dimensions,
                None,
            )
            return
        try:
            # A constant costs no call: most decorations give one callable.
            value = self.value if self.value_fn is None else _evaluate("value", self.value_fn, call)
            customer = (
                self.customer
                if self.customer_fn is None
                else _evaluate("customer", self.customer_fn, call)
            )
            identifier = (
                self.identifier
                if self.identifier_fn is None
                else _evaluate("identifier", self.identifier_fn, call)
            )
        except InvalidEventError as error:
            client.invalid(error, self.event_name)
            return
        if customer is None:  # "" is invalid, named: not "no customer"
            customer = context_customer
        client.record_use(
            self.event_name,
            value,
            customer,
            identifier,
            self.dimensions,
            None,
        )


def _evaluate(field: str, fn: Callable[[Call], Any], call: Call) -> Any:
    """The value of *field* for this call; a callable that raises is an invalid event."""
    try:
        return fn(call)
    except Exception as exc:
        error = InvalidEventError(field, None, f"the {field} callable raised {short_repr(exc)}")
        error.__cause__ = exc
        raise error from exc


def customer_at_call_start(client: Recorder, spec: MeterSpec) -> Any:
    """The context customer at call start; raises only for on_missing_customer='raise'."""
    customer = CUSTOMER.get()
    if customer is None and spec.customer is None and spec.customer_fn is None:
        customer = client.customer_at_start(spec.event_name)
    return customer
