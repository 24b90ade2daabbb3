"""The token meter the OpenAI and Anthropic integrations share: counts, event names, records.

:mod:`meterstream.integrations._llm.patch` is how the SDKs' calls reach it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

from meterstream._client.client import MeterClient
from meterstream._default import get_client
from meterstream._internal import RateLimitedLog, report_internal_error
from meterstream._record.checks import check_dimensions, check_event_name
from meterstream.errors import (
    ConfigurationError,
    InvalidEventError,
    MeterError,
    MissingCustomerError,
)

__all__ = [
    "DEFAULT_EVENT_NAME",
    "TOKEN_TYPES",
    "Counts",
    "CustomerOption",
    "TokenMeter",
    "field_of",
    "split",
]

logger = logging.getLogger("meterstream")

#: Stripe's token meter's event name.
DEFAULT_EVENT_NAME = "token-billing-tokens"
#: The token types, in the order their events are recorded. They do not
#: overlap: their sum is every token the provider billed for the call.
TOKEN_TYPES = ("input", "cached_input", "cache_write", "output", "reasoning")
#: Where a token type's count goes when the event-name mapping has no meter for it.
_PARENT = {"cached_input": "input", "cache_write": "input", "reasoning": "output"}
#: How many (model, token type) dimension sets a meter keeps checked.
_MAX_DIMENSIONS = 4096

#: ``(token_type, count)`` pairs, the counts as the provider reported them.
Counts = list[tuple[str, Any]]
#: A customer id, or a function of the request's JSON body returning one.
CustomerOption = Union[None, str, Callable[[Mapping[str, Any]], Optional[str]]]


def field_of(obj: Any, name: str) -> Any:
    """*obj*'s *name*: an SDK model's attribute or a dict's key; None when absent."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def split(total_in: Any, parts_in: Counts, total_out: Any, parts_out: Counts) -> Counts:
    """Non-overlapping counts from inclusive totals and the parts they include.

    ``input`` is *total_in* less its parts (cached, written to cache) and
    ``output`` is *total_out* less its parts (reasoning). When a part is not a
    count, or the parts add up to more than their total, the totals are kept
    whole and the parts dropped: the sum stays what the provider billed.

    Args:
        total_in: the inclusive input count (None: absent).
        parts_in: ``(token_type, count)`` of the parts inside *total_in*.
        total_out: the inclusive output count (None: absent).
        parts_out: ``(token_type, count)`` of the parts inside *total_out*.

    Returns:
        ``(token_type, count)`` pairs in :data:`TOKEN_TYPES` order; counts that
        are not numbers are passed on so the meter's checks name them.
    """
    counts: Counts = []
    for total, parts, name in ((total_in, parts_in, "input"), (total_out, parts_out, "output")):
        if total is None:
            continue
        given = [(t, v) for t, v in parts if v is not None and v != 0]
        if _is_count(total) and all(_is_count(v) for _, v in given):
            rest = total - sum(v for _, v in given)
            if rest >= 0:
                counts.append((name, rest))
                counts.extend(given)
                continue
        counts.append((name, total))
    order = {t: i for i, t in enumerate(TOKEN_TYPES)}
    counts.sort(key=lambda pair: order[pair[0]])
    return counts


class TokenMeter:
    """Records the tokens of one instrumented client's calls.

    Args:
        provider: ``"openai"`` or ``"anthropic"``: the prefix of ``model``.
        event_name: one event name for every token type, or a mapping from
            token type to event name (``input`` and ``output`` required; a
            type it leaves out is counted in ``input`` or ``output``).
        customer: None for the current customer when the call is made, a
            customer id, or a function of the request's JSON body.
        meter_client: the client to record through; None for the default
            client (whichever it is when the call is made).

    Raises:
        ConfigurationError: a bad event name, mapping or customer option.
    """

    def __init__(
        self,
        provider: str,
        *,
        event_name: Union[str, Mapping[str, str]],
        customer: CustomerOption,
        meter_client: Optional[MeterClient],
    ) -> None:
        self.provider = provider
        self._names = _event_names(event_name)
        if customer is not None and not isinstance(customer, str) and not callable(customer):
            raise ConfigurationError(
                f"instrument(customer=...): expected None, a customer id or a function "
                f"of the request body, got {customer!r}"
            )
        self._customer = customer
        self._meter_client = meter_client
        self._dims: dict[tuple[str, str], dict[str, str]] = {}
        self._log = RateLimitedLog()
        #: Calls whose tokens could not be recorded (metering failed, the call went on).
        self.errors = 0

    def client(self) -> MeterClient:
        """The meterstream client to record through."""
        return self._meter_client if self._meter_client is not None else get_client()

    def customer_for(self, body: Any) -> Optional[str]:
        """The customer of a request about to be sent (in the caller's context).

        Raises:
            MissingCustomerError: none, and the client's ``on_missing_customer``
                is ``"raise"``: raised before the request, so no tokens are spent.
        """
        option = self._customer
        mc = self.client()
        if option is None:
            customer = mc.current_customer()
        elif isinstance(option, str):
            customer = option
        else:
            try:
                customer = option(body if isinstance(body, Mapping) else {})
            except Exception as exc:  # the application's function: log, bill nobody
                self.failed("customer", exc)
                customer = None
        if not customer and mc.settings.on_missing_customer == "raise":
            raise MissingCustomerError(self._names["input"])
        return customer

    def record(self, customer: Optional[str], model: Any, counts: Counts) -> None:
        """Record one event per token type with a count other than zero. Never raises."""
        try:
            mc = self.client()
            model_name = (
                f"{self.provider}/{model if isinstance(model, str) and model else 'unknown'}"
            )
            names = self._names
            merged: Counts = []
            where: dict[str, int] = {}
            for token_type, value in counts:
                if token_type not in names:
                    token_type = _PARENT[token_type]  # no meter of its own: in its total
                at = where.get(token_type)
                if at is not None and _is_count(value) and _is_count(merged[at][1]):
                    merged[at] = (token_type, merged[at][1] + value)
                else:
                    where[token_type] = len(merged)
                    merged.append((token_type, value))
            for token_type, value in merged:
                if value == 0:
                    continue
                try:
                    if not _is_count(value):
                        mc.invalid(
                            InvalidEventError(
                                "value", value, f"{token_type} tokens: expected a whole number >= 0"
                            ),
                            names[token_type],
                        )
                        continue
                    mc.record_use(
                        names[token_type],
                        value,
                        customer,
                        None,
                        self._dimensions(model_name, token_type),
                        None,
                    )
                except MeterError as exc:  # raise_errors / on_missing_customer="raise"
                    self.failed("record", exc)
        except Exception as exc:  # never break the model call
            report_internal_error(exc)
            self.failed("internal", exc)

    def _dimensions(self, model: str, token_type: str) -> dict[str, str]:
        """The checked dimensions of one (model, token type): checked once, then reused."""
        key = (model, token_type)
        dims = self._dims.get(key)
        if dims is None:
            dims = check_dimensions({"model": model, "token_type": token_type}) or {}
            if len(self._dims) < _MAX_DIMENSIONS:  # model names come from responses: bounded
                self._dims[key] = dims
        return dims

    def failed(self, reason: str, exc: BaseException) -> None:
        """Count and log (rate-limited) a metering failure the call does not see."""
        self.errors += 1
        self._log.log(logging.WARNING, reason, "%s tokens not metered: %r", self.provider, exc)


def _event_names(event_name: Union[str, Mapping[str, str]]) -> dict[str, str]:
    if isinstance(event_name, str):
        name = check_event_name(event_name)
        return dict.fromkeys(TOKEN_TYPES, name)
    if not isinstance(event_name, Mapping):
        raise ConfigurationError(
            f"instrument(event_name=...): expected an event name or a mapping from token "
            f"type to event name, got {event_name!r}"
        )
    unknown = [t for t in event_name if t not in TOKEN_TYPES]
    if unknown:
        raise ConfigurationError(
            f"instrument(event_name=...): unknown token type {unknown[0]!r}; "
            f"expected some of {list(TOKEN_TYPES)}"
        )
    for required in ("input", "output"):
        if required not in event_name:
            raise ConfigurationError(
                f"instrument(event_name=...): the mapping needs an event name for {required!r}"
            )
    return {t: check_event_name(n) for t, n in event_name.items()}
