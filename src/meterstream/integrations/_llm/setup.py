"""What ``instrument()`` does for either SDK: check the client, make its meter, patch it.

:mod:`meterstream.integrations.openai` and :mod:`meterstream.integrations.anthropic`
keep their own ``instrument()`` (their docstrings and types are the public
API) and describe their SDK to :func:`instrument_client`: its client
classes, the resources that send billable requests, and how a request
begins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

from meterstream._client.client import MeterClient
from meterstream.errors import ConfigurationError
from meterstream.integrations._llm.meter import CustomerOption, TokenMeter
from meterstream.integrations._llm.patch import Begin, instrument_resources

__all__ = ["instrument_client"]


def instrument_client(
    client: Any,
    *,
    provider: str,
    sync_class: type,
    async_class: type,
    paths: tuple[tuple[str, ...], ...],
    begin_for: Callable[[TokenMeter, bool], Begin],
    event_name: Union[str, Mapping[str, str]],
    customer: CustomerOption,
    meter_client: Optional[MeterClient],
) -> None:
    """Meter *client*'s billable calls, in place.

    Args:
        client: the SDK client to instrument.
        provider: the SDK's module name (``"openai"``), the prefix of ``model``.
        sync_class: the SDK's client class.
        async_class: the SDK's async client class.
        paths: the attribute paths of the resources that send billable requests.
        begin_for: ``begin_for(meter, is_async)``: the provider's ``begin``.
        event_name: ``instrument()``'s option.
        customer: ``instrument()``'s option.
        meter_client: ``instrument()``'s option.

    Raises:
        ConfigurationError: not one of the SDK's clients, or a bad option.
    """
    if isinstance(client, async_class):
        is_async = True
    elif isinstance(client, sync_class):
        is_async = False
    else:
        raise ConfigurationError(
            f"instrument(): expected an {provider}.{sync_class.__name__} or "
            f"{provider}.{async_class.__name__} client, got {client!r}"
        )
    meter = TokenMeter(
        provider, event_name=event_name, customer=customer, meter_client=meter_client
    )
    instrument_resources(client, paths, lambda a: begin_for(meter, a), meter, is_async)
