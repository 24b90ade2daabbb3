"""The token meter the OpenAI and Anthropic integrations share: counts, event names, records.

:mod:`meterstream.integrations._llm.patch` is how the SDKs' calls reach it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
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
    "fields",
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
#: How many models' checked dimensions a meter keeps.
_MAX_MODELS = 1024
#: How many types :func:`is_mapping` remembers.
_MAX_TYPES = 4096

#: ``(token_type, count)`` pairs, the counts as the provider reported them.
Counts = list[tuple[str, Any]]
#: A customer id, or a function of the request's JSON body returning one.
CustomerOption = Union[None, str, Callable[[Mapping[str, Any]], Optional[str]]]


def field_of(obj: Any, name: str) -> Any:
    """*obj*'s *name*: an SDK model's field or a dict's key; None when absent."""
    if type(obj) is dict:
        return obj.get(name)
    return fields(obj).get(name)


class _Attributes:
    """Another object, read by attribute: ``get(name)`` is ``getattr(obj, name, None)``."""

    __slots__ = ("_obj",)

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def get(self, name: str) -> Any:
        return getattr(self._obj, name, None)


_NO_FIELDS: Mapping[str, Any] = MappingProxyType({})
#: The kind of each type :func:`fields` saw: a mapping, a pydantic (v2) model, another object.
_KINDS: dict[type, str] = {dict: "mapping"}


def fields(obj: Any) -> Any:
    """*obj*'s fields, read with ``.get(name)`` (None when absent).

    A usage block is an SDK model (pydantic) or, given as JSON, a dict. A
    pydantic model's fields are its instance ``__dict__`` (version 2 keeps
    extra fields beside it): read there, a field the SDK version does not
    have costs a dict lookup, where ``getattr`` would build and catch an
    ``AttributeError`` (microseconds with pydantic). None has no fields.
    """
    if obj is None:
        return _NO_FIELDS
    kind = _KINDS.get(type(obj))
    if kind is None:
        if isinstance(obj, Mapping):
            kind = "mapping"
        elif hasattr(type(obj), "__pydantic_extra__") and hasattr(obj, "__dict__"):
            kind = "pydantic"
        else:
            kind = "object"
        if len(_KINDS) < _MAX_TYPES:
            _KINDS[type(obj)] = kind
    if kind == "mapping":
        return obj
    if kind == "pydantic":
        extra = obj.__pydantic_extra__
        return {**obj.__dict__, **extra} if extra else obj.__dict__
    return _Attributes(obj)


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
        parts_in: ``(token_type, count)`` of the parts inside *total_in*, in
            :data:`TOKEN_TYPES` order.
        total_out: the inclusive output count (None: absent).
        parts_out: ``(token_type, count)`` of the parts inside *total_out*, in
            :data:`TOKEN_TYPES` order.

    Returns:
        ``(token_type, count)`` pairs in :data:`TOKEN_TYPES` order; counts that
        are not numbers are passed on so the meter's checks name them.
    """
    counts: Counts = []
    if total_in is not None:
        _split_one(counts, "input", total_in, parts_in)
    if total_out is not None:
        _split_one(counts, "output", total_out, parts_out)
    return counts


def _split_one(counts: Counts, name: str, total: Any, parts: Counts) -> None:
    given = []
    rest = total if type(total) is int and total >= 0 else None
    for part in parts:
        value = part[1]
        if value is None or value == 0:
            continue
        given.append(part)
        if rest is not None:
            rest = rest - value if type(value) is int and value >= 0 else None
    if rest is not None and rest >= 0:
        counts.append((name, rest))
        counts.extend(given)
    else:
        counts.append((name, total))


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
        #: Per model the response names: each token type's (event name, dimensions).
        self._uses: dict[str, dict[str, tuple[str, dict[str, str]]]] = {}
        #: Some token type has no event name of its own: counted in its total.
        self._folds = len(self._names) < len(TOKEN_TYPES)
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
        """Record one event per token type with a count other than zero. Never raises.

        The events of one call go to the client in one :meth:`MeterClient.record_uses`:
        one customer, one timestamp, an identifier and checks per event.
        """
        try:
            mc = self.client()
            uses_of = self._uses.get(model) if type(model) is str else None
            if uses_of is None:
                uses_of = self._uses_for(model)
            if self._folds:
                counts = self._fold(counts)
            uses: list[tuple[str, Any, Optional[dict[str, str]]]] = []
            for token_type, value in counts:
                if type(value) is int and value > 0:
                    name, dims = uses_of[token_type]
                    uses.append((name, value, dims))
                elif value != 0:
                    self._invalid(mc, token_type, value)
            if uses:
                mc.record_uses(uses, customer, self._record_failed)
        except Exception as exc:  # never break the model call
            report_internal_error(exc)
            self.failed("internal", exc)

    def record_response(
        self,
        customer: Optional[str],
        model: Any,
        response: Any,
        usage_counts: Callable[[Any], Optional[Counts]],
    ) -> Any:
        """Record the tokens of a response that is not a stream; *response* is returned.

        Args:
            customer: the customer found when the call was made.
            model: the request's model (the response's own wins).
            response: the SDK's parsed response.
            usage_counts: the provider's counts of its ``usage``.
        """
        counts = usage_counts(getattr(response, "usage", None))
        if counts:
            self.record(customer, getattr(response, "model", None) or model, counts)
        return response

    def _fold(self, counts: Counts) -> Counts:
        """Each token type without an event name of its own, added into its total."""
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
        return merged

    def _invalid(self, mc: MeterClient, token_type: str, value: Any) -> None:
        """A count that is not a whole number >= 0: an invalid event, named."""
        try:
            mc.invalid(
                InvalidEventError(
                    "value", value, f"{token_type} tokens: expected a whole number >= 0"
                ),
                self._names[token_type],
            )
        except MeterError as exc:  # raise_errors
            self.failed("record", exc)

    def _record_failed(self, exc: MeterError) -> None:
        self.failed("record", exc)  # raise_errors / on_missing_customer="raise"

    def _uses_for(self, model: Any) -> dict[str, tuple[str, dict[str, str]]]:
        """The event name and checked dimensions of each token type of *model*.

        Checked once per model, then reused: model names come from
        responses, so the number kept is bounded.
        """
        model_name = f"{self.provider}/{model if isinstance(model, str) and model else 'unknown'}"
        uses_of = {
            token_type: (
                name,
                check_dimensions({"model": model_name, "token_type": token_type}) or {},
            )
            for token_type, name in self._names.items()
        }
        if type(model) is str and len(self._uses) < _MAX_MODELS:
            self._uses[model] = uses_of
        return uses_of

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
