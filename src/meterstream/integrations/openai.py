"""Bill OpenAI tokens per customer: Chat Completions, Responses and Embeddings, metered in one line.

Example::

    import openai
    import meterstream
    from meterstream.integrations.openai import instrument

    client = instrument(openai.OpenAI())
    with meterstream.customer("cus_123"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])

Each call records one event per token type (``input``, ``output``, and where
the usage says so ``cached_input``, ``cache_write``, ``reasoning``) with the
dimensions ``model`` (``openai/<the model the response names>``) and
``token_type``. The counts do not overlap: ``input`` is ``prompt_tokens``
(or ``input_tokens``) less the cached and cache-written tokens, ``output`` is
``completion_tokens`` (or ``output_tokens``) less the reasoning tokens.
See ``docs/llm.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional, TypeVar, Union

try:
    import openai as _openai
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ImportError(
        "meterstream.integrations.openai needs the OpenAI SDK: pip install 'meterstream[openai]'"
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

_PATHS = (("chat", "completions"), ("responses",), ("embeddings",), ("beta", "chat", "completions"))
_ROUTES = {"/chat/completions": "chat", "/responses": "responses", "/embeddings": "embeddings"}
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


def instrument(
    client: C,
    *,
    event_name: Union[str, Mapping[str, str]] = DEFAULT_EVENT_NAME,
    customer: CustomerOption = None,
    meter_client: Optional[MeterClient] = None,
) -> C:
    """Meter the tokens of every billable call *client* makes.

    Args:
        client: an ``openai.OpenAI`` or ``openai.AsyncOpenAI`` (Azure's too).
        event_name: the event name of every token type (Stripe's
            ``"token-billing-tokens"`` by default), or a mapping from token
            type to event name: ``input`` and ``output`` are required, a type
            left out is counted in ``input`` (cached, cache writes) or
            ``output`` (reasoning).
        customer: None for the current customer (``meterstream.customer()``)
            when the call is made; a customer id; or a function of the
            request's JSON body (``lambda body: body["user"]``).
        meter_client: the meterstream client to record through; None for the
            default one.

    Returns:
        *client* itself, instrumented (and so are the copies
        ``with_options()`` makes). Instrumenting twice bills once.

    Raises:
        ConfigurationError: not an OpenAI client, or a bad option.
    """
    instrument_client(
        client,
        provider="openai",
        sync_class=_openai.OpenAI,
        async_class=_openai.AsyncOpenAI,
        paths=_PATHS,
        begin_for=_begin_for,
        event_name=event_name,
        customer=customer,
        meter_client=meter_client,
    )
    return client


def usage_counts(usage: Any) -> Optional[Counts]:
    """The non-overlapping token counts of an OpenAI ``usage`` object.

    Args:
        usage: a ``CompletionUsage`` (chat, embeddings), a ``ResponseUsage``
            (Responses) or their JSON dicts; None when the response had none.

    Returns:
        ``(token_type, count)`` pairs, or None for no usage.
    """
    if usage is None:
        return None
    usage = fields(usage)
    total_in = usage.get("prompt_tokens")
    if total_in is not None:
        details_in = fields(usage.get("prompt_tokens_details"))
        total_out = usage.get("completion_tokens")
        details_out = fields(usage.get("completion_tokens_details"))
    else:
        total_in = usage.get("input_tokens")
        details_in = fields(usage.get("input_tokens_details"))
        total_out = usage.get("output_tokens")
        details_out = fields(usage.get("output_tokens_details"))
    return split(
        total_in,
        [
            ("cached_input", details_in.get("cached_tokens")),
            ("cache_write", details_in.get("cache_write_tokens")),
        ],
        total_out,
        [("reasoning", details_out.get("reasoning_tokens"))],
    )


class _ChatTap(StreamTap):
    """A chat stream: the usage arrives in the last chunk, the one with no choices."""

    __slots__ = ("hide", "usage")

    def __init__(self, meter: TokenMeter, customer: Optional[str], model: Any, hide: bool):
        super().__init__(meter, customer, model)
        self.hide = hide
        self.usage: Any = None

    def see(self, item: Any) -> bool:
        usage = getattr(item, "usage", None)
        if usage is None:
            return True
        self.usage = usage  # servers that report usage on every chunk: the last one wins
        model = getattr(item, "model", None)
        if model:
            self.model = model
        if getattr(item, "choices", None):
            return True
        self.finish()
        return not self.hide  # the chunk include_usage added: the caller did not ask for it

    def counts(self) -> Optional[Counts]:
        return usage_counts(self.usage)


class _ResponsesTap(StreamTap):
    """A Responses stream: the usage is in the terminal event's ``response``."""

    __slots__ = ("usage",)

    def __init__(self, meter: TokenMeter, customer: Optional[str], model: Any):
        super().__init__(meter, customer, model)
        self.usage: Any = None

    def see(self, item: Any) -> bool:
        if getattr(item, "type", None) in _TERMINAL:
            response = getattr(item, "response", None)
            self.usage = getattr(response, "usage", None)
            self.model = getattr(response, "model", None) or self.model
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
        kind = _ROUTES.get(path)
        if kind is None:
            return None
        body = kwargs.get("body")
        customer = meter.customer_for(body)
        model = field_of(body, "model")
        stream = kwargs.get("stream") is True
        hide = False
        if stream and kind == "chat" and isinstance(body, Mapping):
            options = body.get("stream_options")
            if not (isinstance(options, Mapping) and options.get("include_usage") is True):
                sent = dict(body)
                sent["stream_options"] = {
                    **(options if isinstance(options, Mapping) else {}),
                    "include_usage": True,
                }
                kwargs = {**kwargs, "body": sent}
                hide = True

        def finish(result: Any) -> Any:
            if stream:
                tap: StreamTap
                if kind == "chat":
                    tap = _ChatTap(meter, customer, model, hide)
                else:
                    tap = _ResponsesTap(meter, customer, model)
                return tap_stream(result, tap, is_async=is_async)
            return meter.record_response(customer, model, result, usage_counts)

        return kwargs, finish

    return begin
