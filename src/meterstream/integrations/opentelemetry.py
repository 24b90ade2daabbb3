"""Meter what you already trace: a SpanProcessor that turns finished spans into meter events.

Example::

    from opentelemetry.sdk.trace import TracerProvider
    from meterstream.integrations.opentelemetry import MeteringSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(MeteringSpanProcessor([
        {"event_name": "llm_input_tokens", "value_attribute": "gen_ai.usage.input_tokens"},
        {"event_name": "llm_output_tokens", "value_attribute": "gen_ai.usage.output_tokens",
         "dimension_attributes": {"model": "gen_ai.request.model"}},
    ]))

Rules are data (a dict each, or :class:`SpanRule`), so they can live in
configuration. A span matching a rule records one event whose value is the
span attribute named by ``value_attribute`` (or 1 without one), for the
customer in ``customer_attribute`` or, failing that, the customer current when
the span started (``meterstream.customer()`` or baggage). Its identifier is
derived from the trace and span ids, so a span exported twice is billed once.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional, Union

try:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ImportError(
        "meterstream.integrations.opentelemetry needs the OpenTelemetry SDK: "
        "pip install 'meterstream[otel]'"
    ) from exc

from meterstream._client.client import MeterClient
from meterstream._default import get_client
from meterstream._internal import RateLimitedLog, report_internal_error
from meterstream._record.context import current_customer
from meterstream.errors import ConfigurationError, MeterError

__all__ = ["MeteringSpanProcessor", "SpanRule"]

_RULE_KEYS = {
    "event_name",
    "value_attribute",
    "span_name",
    "customer_attribute",
    "dimension_attributes",
}


class SpanRule:
    """Which finished spans become which meter events.

    Args:
        event_name: the meter event to record.
        value_attribute: span attribute holding the value (a number); a span
            without it does not match. None: each matching span counts 1.
        span_name: a glob the span's name must match (``"chat *"``); None: any.
        customer_attribute: span attribute holding the customer id; None (or
            absent on the span): the customer current when the span started.
        dimension_attributes: meter dimension -> span attribute to copy.
    """

    def __init__(
        self,
        event_name: str,
        value_attribute: Optional[str] = None,
        span_name: Optional[str] = None,
        customer_attribute: Optional[str] = None,
        dimension_attributes: Optional[Mapping[str, str]] = None,
    ) -> None:
        if not isinstance(event_name, str) or not event_name:
            raise ConfigurationError(f"SpanRule.event_name: expected a name, got {event_name!r}")
        self.event_name = event_name
        self.value_attribute = value_attribute
        self.span_name = span_name
        self.customer_attribute = customer_attribute
        self.dimension_attributes = dict(dimension_attributes or {})

    @classmethod
    def of(cls, rule: Union[SpanRule, Mapping[str, Any]]) -> SpanRule:
        """A rule from a ``SpanRule`` or a dict of its fields.

        Args:
            rule: a ``SpanRule`` (returned as is) or a dict with its fields.

        Returns:
            The rule.

        Raises:
            ConfigurationError: not a dict or rule, or an unknown or missing key.
        """
        if isinstance(rule, SpanRule):
            return rule
        if not isinstance(rule, Mapping):
            raise ConfigurationError(f"span rule: expected a dict or SpanRule, got {rule!r}")
        unknown = set(rule) - _RULE_KEYS
        if unknown:
            raise ConfigurationError(
                f"span rule: unknown keys {sorted(unknown)}; expected some of {sorted(_RULE_KEYS)}"
            )
        if "event_name" not in rule:
            raise ConfigurationError(f"span rule: 'event_name' is required, got {dict(rule)!r}")
        return cls(**rule)

    def matches(self, span: ReadableSpan) -> bool:
        """Whether *span* becomes an event under this rule.

        Args:
            span: a finished span.

        Returns:
            True when the name matches ``span_name`` (a glob) and the span has
            the ``value_attribute``, for each of them that is set.
        """
        if self.span_name is not None and not fnmatch.fnmatchcase(span.name, self.span_name):
            return False
        attributes = span.attributes or {}
        return self.value_attribute is None or self.value_attribute in attributes

    def __repr__(self) -> str:
        return f"SpanRule({self.event_name!r}, value_attribute={self.value_attribute!r})"


class MeteringSpanProcessor(SpanProcessor):
    """Records a meter event for each finished span that matches a rule.

    Args:
        rules: :class:`SpanRule` objects or dicts of their arguments.
        client: the client to record through; default the default client
            (whichever it is when a span ends).
    """

    def __init__(
        self,
        rules: Iterable[Union[SpanRule, Mapping[str, Any]]],
        client: Optional[MeterClient] = None,
    ) -> None:
        self.rules = [SpanRule.of(rule) for rule in rules]
        self._client = client
        self._get_client: Callable[[], MeterClient] = (
            get_client if client is None else (lambda: client)
        )
        self._started: dict[int, Optional[str]] = {}
        self._lock = threading.Lock()
        self._log = RateLimitedLog()
        #: Spans that matched a rule but could not be recorded.
        self.errors = 0

    def on_start(self, span: Span, parent_context: Optional[Context] = None) -> None:
        """Remember the customer current when *span* starts (the SDK calls this).

        Args:
            span: the span starting.
            parent_context: its parent's context, unused.
        """
        try:
            # The customer's block, else the baggage under the client's key.
            customer = (
                current_customer() if self._client is None else self._client.current_customer()
            )
            context = span.get_span_context()
            if customer is not None and context is not None:
                with self._lock:
                    self._started[context.span_id] = customer
        except Exception as exc:  # never break the application's tracing
            self._failed(exc)

    def on_end(self, span: ReadableSpan) -> None:
        """Record an event for *span* when a rule matches it (the SDK calls this).

        Never raises: a failure is logged and counted in ``errors``.

        Args:
            span: the finished span.
        """
        context = span.get_span_context()
        span_id = context.span_id if context is not None else 0
        with self._lock:
            started_customer = self._started.pop(span_id, None)
        try:
            for index, rule in enumerate(self.rules):
                if rule.matches(span):
                    self._record(span, index, rule, started_customer)
        except Exception as exc:
            self._failed(exc)

    def _record(
        self, span: ReadableSpan, index: int, rule: SpanRule, started_customer: Optional[str]
    ) -> None:
        attributes = span.attributes or {}
        customer = started_customer
        if rule.customer_attribute is not None:
            customer = attributes.get(rule.customer_attribute, customer)  # type: ignore[assignment]
        value: Any = 1 if rule.value_attribute is None else attributes[rule.value_attribute]
        dimensions = {
            dimension: str(attributes[attribute])
            for dimension, attribute in rule.dimension_attributes.items()
            if attribute in attributes
        }
        context = span.get_span_context()
        identifier = None
        if context is not None:
            identifier = f"otel-{context.trace_id:032x}-{context.span_id:016x}-{index}"
        timestamp = span.end_time / 1e9 if span.end_time else None
        try:
            self._get_client().record(
                rule.event_name,
                value,
                customer=customer,
                identifier=identifier,
                dimensions=dimensions or None,
                timestamp=timestamp,
            )
        except MeterError as exc:
            self.errors += 1
            self._log.log(logging.WARNING, "span", "span not metered: %s", exc)

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        report_internal_error(exc)
        self._log.log(logging.WARNING, "processor", "span processor error: %r", exc)

    def shutdown(self) -> None:
        """Forget the spans still open; the client is not shut down (it is not ours)."""
        with self._lock:
            self._started.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the client's recorded events.

        Args:
            timeout_millis: how long to wait, in milliseconds.

        Returns:
            True when everything recorded was settled in time.
        """
        return self._get_client().flush(timeout_millis / 1000)
