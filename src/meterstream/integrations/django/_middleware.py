"""``MeterstreamMiddleware``: the request's customer for the duration of the request."""

# mypy: disable-error-code="import-untyped"

from __future__ import annotations

from typing import Any, Callable, Optional

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async

from meterstream._client.client import MeterClient
from meterstream._record.context import current_customer
from meterstream._record.context import customer as customer_block
from meterstream.integrations._common import (
    IntegrationOptions,
    RequestMeter,
    Resolver,
    aiterate_as,
    iterate_as,
)
from meterstream.integrations._common import header as header
from meterstream.integrations._common import user_attribute as _user_attribute
from meterstream.integrations.django._settings import options_from_settings

__all__ = ["MeterstreamMiddleware", "header", "user_attribute"]


def _request_user(request: Any) -> Any:
    return getattr(request, "user", None)


def user_attribute(path: str) -> Resolver:
    """A resolver reading the customer id at *path* on ``request.user``.

    Anonymous users, and a None along the path, mean no customer. Put the
    middleware after ``AuthenticationMiddleware``. Under ASGI the resolver
    runs in a thread (``sync_to_async``): loading the user touches the database.

    Example::

        METERSTREAM = {"customer_resolver": user_attribute("profile.stripe_customer_id")}

    Args:
        path: a dotted attribute path on the user.

    Returns:
        The resolver.
    """
    return _user_attribute(path, _request_user)


class MeterstreamMiddleware:
    """Sets the current customer for each request, and optionally meters requests.

    Reads its options from ``settings.METERSTREAM`` (``customer_resolver``,
    ``request_event``, ``request_event_statuses``, ``flush_each_request``,
    ``flush_timeout``) when Django builds the middleware chain. Sync and async
    capable: it follows the mode of the chain it is part of.

    A resolver that raises, or returns something that is not a string, is
    logged (at most once a minute), counted in :attr:`resolver_errors`, and the
    request goes on without a customer.

    Args:
        get_response: the next handler in the chain (Django passes it).
        options: the options, instead of ``settings.METERSTREAM``'s.
        client: the client to record with; default the default client.

    Raises:
        ImproperlyConfigured: an option in ``settings.METERSTREAM`` is wrong.
    """

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[Any], Any],
        *,
        options: Optional[IntegrationOptions] = None,
        client: Optional[MeterClient] = None,
    ) -> None:
        self.get_response = get_response
        self.meter = RequestMeter(options or options_from_settings(), client)
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)

    @property
    def resolver_errors(self) -> int:
        """How many times the customer resolver failed."""
        return self.meter.resolver_errors

    def __call__(self, request: Any) -> Any:
        if self._is_async:
            return self.__acall__(request)
        meter = self.meter
        if meter.resolver is None:
            customer = current_customer()
            response = self.get_response(request)
        else:
            customer = meter.resolve(request)
            with customer_block(customer):
                response = self.get_response(request)
        if getattr(response, "streaming", False):
            self._wrap_stream(response, customer)
        elif meter.after_response:
            meter.finish(customer, response.status_code)
        return response

    async def __acall__(self, request: Any) -> Any:
        meter = self.meter
        if meter.resolver is None:
            customer = current_customer()
            response = await self.get_response(request)
        else:
            if meter.resolver_async_safe:
                customer = meter.resolve(request)
            else:
                # Resolvers may load request.user: database access, which
                # Django forbids on the event loop.
                customer = await sync_to_async(meter.resolve)(request)
            async with customer_block(customer):
                response = await self.get_response(request)
        if getattr(response, "streaming", False):
            self._wrap_stream(response, customer)
        elif meter.after_response:
            await self._afinish(customer, response.status_code)
        return response

    async def _afinish(self, customer: Optional[str], status: int) -> None:
        meter = self.meter
        meter.record_request(customer, status)
        if meter.flush_each_request:
            await sync_to_async(meter.flush, thread_sensitive=False)()

    def _wrap_stream(self, response: Any, customer: Optional[str]) -> None:
        """Make a streaming body with the request's customer; meter it once complete.

        Django iterates a streaming body after the middleware has returned,
        outside the customer block of the request.
        """
        meter = self.meter
        if meter.resolver is None and not meter.after_response:
            return
        status = response.status_code
        if getattr(response, "is_async", False):

            async def afinish() -> None:
                if meter.after_response:
                    await self._afinish(customer, status)

            response.streaming_content = aiterate_as(customer, response.streaming_content, afinish)
        else:

            def finish() -> None:
                if meter.after_response:
                    meter.finish(customer, status)

            response.streaming_content = iterate_as(customer, response.streaming_content, finish)
