"""Bill Anthropic tokens per customer: Messages, streamed or not, metered in one line.

Example::

    import anthropic
    import meterstream
    from meterstream.integrations.anthropic import instrument

    client = instrument(anthropic.Anthropic())
    with meterstream.customer("cus_123"):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=512, messages=[...])

``messages.create`` (``stream=True`` included), ``messages.stream()``,
``messages.parse`` and their ``beta.messages`` twins are metered. Each call
records one event per token type with the dimensions ``model``
(``anthropic/<the model the response names>``) and ``token_type``:
``input`` is ``input_tokens`` (Anthropic already leaves the cache out of it),
``cached_input`` is ``cache_read_input_tokens``, ``cache_write`` is
``cache_creation_input_tokens``, ``reasoning`` is
``output_tokens_details.thinking_tokens`` and ``output`` is
``output_tokens`` less the thinking tokens. See ``docs/llm.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional, TypeVar, Union

try:
    import anthropic as _anthropic
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ImportError(
        "meterstream.integrations.anthropic needs the Anthropic SDK: "
        "pip install 'meterstream[anthropic]'"
    ) from exc

from meterstream._client.client import MeterClient
from meterstream.integrations._llm.meter import (
    DEFAULT_EVENT_NAME,
    Counts,
    CustomerOption,
    TokenMeter,
    field_of,
    fields,
    split,
)
from meterstream.integrations._llm.patch import StreamTap, tap_stream
from meterstream.integrations._llm.setup import instrument_client

__all__ = ["DEFAULT_EVENT_NAME", "instrument", "usage_counts"]

C = TypeVar("C")

_PATHS = (("messages",), ("beta", "messages"))
_ROUTES = frozenset({"/v1/messages", "/v1/messages?beta=true"})
#: The usage fields a ``message_delta`` may carry, each a running total.
_DELTA_FIELDS = (
    "input_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "output_tokens",
)


def instrument(
    client: C,
    *,
    event_name: Union[str, Mapping[str, str]] = DEFAULT_EVENT_NAME,
    customer: CustomerOption = None,
    meter_client: Optional[MeterClient] = None,
) -> C:
    """Meter the tokens of every Messages call *client* makes.

    Args:
        client: an ``anthropic.Anthropic`` or ``anthropic.AsyncAnthropic``.
        event_name: the event name of every token type (Stripe's
            ``"token-billing-tokens"`` by default), or a mapping from token
            type to event name: ``input`` and ``output`` are required, a type
            left out is counted in ``input`` (cache reads and writes) or
            ``output`` (thinking).
        customer: None for the current customer (``meterstream.customer()``)
            when the call is made; a customer id; or a function of the
            request's JSON body (``lambda body: body["metadata"]["user_id"]``).
        meter_client: the meterstream client to record through; None for the
            default one.

    Returns:
        *client* itself, instrumented (and so are the copies
        ``with_options()`` makes). Instrumenting twice bills once.

    Raises:
        ConfigurationError: not an Anthropic client, or a bad option.
    """
    instrument_client(
        client,
        provider="anthropic",
        sync_class=_anthropic.Anthropic,
        async_class=_anthropic.AsyncAnthropic,
        paths=_PATHS,
        begin_for=_begin_for,
        event_name=event_name,
        customer=customer,
        meter_client=meter_client,
    )
    return client


def usage_counts(usage: Any) -> Optional[Counts]:
    """The non-overlapping token counts of an Anthropic ``usage`` object.

    Args:
        usage: a ``Usage`` (or ``BetaUsage``) or its JSON dict; None when the
            message had none.

    Returns:
        ``(token_type, count)`` pairs, or None for no usage.
    """
    if usage is None:
        return None
    usage = fields(usage)
    details = fields(usage.get("output_tokens_details"))
    counts = split(
        None,
        [],
        usage.get("output_tokens"),
        [("reasoning", details.get("thinking_tokens"))],
    )
    given = [
        ("input", usage.get("input_tokens")),
        ("cached_input", usage.get("cache_read_input_tokens")),
        ("cache_write", usage.get("cache_creation_input_tokens")),
    ]
    return [(t, v) for t, v in given if v is not None] + counts


class _MessagesTap(StreamTap):
    """A Messages stream: ``message_start`` has the input, each ``message_delta`` running totals.

    The counts are recorded at ``message_stop``, or when the stream ends,
    fails or is closed before it: then they are what the last event said.
    """

    __slots__ = ("usage",)

    def __init__(self, meter: TokenMeter, customer: Optional[str], model: Any):
        super().__init__(meter, customer, model)
        self.usage: Optional[dict[str, Any]] = None

    def see(self, item: Any) -> bool:
        kind = getattr(item, "type", None)
        if kind == "message_start":
            message = getattr(item, "message", None)
            self.model = getattr(message, "model", None) or self.model
            usage = getattr(message, "usage", None)
            if usage is not None:
                given = fields(usage)
                self.usage = {name: given.get(name) for name in _DELTA_FIELDS}
                self.usage["output_tokens_details"] = given.get("output_tokens_details")
        elif kind == "message_delta":
            usage = getattr(item, "usage", None)
            if usage is not None:
                if self.usage is None:
                    self.usage = {}
                given = fields(usage)
                for name in (*_DELTA_FIELDS, "output_tokens_details"):
                    value = given.get(name)
                    if value is not None:  # cumulative: overwrite, never add
                        self.usage[name] = value
        elif kind == "message_stop":
            self.finish()
        return True

    def counts(self) -> Optional[Counts]:
        return usage_counts(self.usage)


def _begin_for(
    meter: TokenMeter, is_async: bool
) -> Callable[[str, dict[str, Any]], Optional[tuple[dict[str, Any], Callable[[Any], Any]]]]:
    def begin(
        path: str, kwargs: dict[str, Any]
    ) -> Optional[tuple[dict[str, Any], Callable[[Any], Any]]]:
        if path not in _ROUTES:
            return None
        body = kwargs.get("body")
        customer = meter.customer_for(body)
        model = field_of(body, "model")
        stream = kwargs.get("stream") is True

        def finish(result: Any) -> Any:
            if stream:
                return tap_stream(result, _MessagesTap(meter, customer, model), is_async=is_async)
            return meter.record_response(customer, model, result, usage_counts)

        return kwargs, finish

    return begin
