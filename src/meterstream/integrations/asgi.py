"""FastAPI and Starlette: a pure ASGI middleware and FastAPI dependencies.

Install with ``pip install 'meterstream[fastapi]'``, then::

    from meterstream.integrations.asgi import MeterstreamMiddleware, header

    app = FastAPI()
    app.add_middleware(
        MeterstreamMiddleware,
        customer_resolver=header("X-Customer-Id"),   # see the trust caveat
        request_event="api_requests",                # optional: one use per 2xx response
    )

Resolvers take a :class:`starlette.requests.Request` built from the scope
(an :class:`~starlette.requests.HTTPConnection` for websockets): headers,
query and path, cookies, ``scope["user"]``; not the body. See
``docs/integrations/fastapi.md``.
"""

from __future__ import annotations

from typing import Any, Optional

try:
    import anyio
    from starlette.exceptions import HTTPException
    from starlette.requests import HTTPConnection, Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "meterstream.integrations.asgi needs Starlette: pip install 'meterstream[fastapi]'"
    ) from exc

from meterstream._client.client import MeterClient
from meterstream._record import baggage as _baggage
from meterstream._record.context import CUSTOMER, context_value, enter_customer, exit_customer
from meterstream._record.context import current_customer as _current_customer
from meterstream._record.context import customer as customer_block
from meterstream.errors import ConfigurationError
from meterstream.integrations._asgi_webhook import StripeWebhook
from meterstream.integrations._common import RequestMeter, Resolver, parse_options
from meterstream.integrations._common import header as header
from meterstream.integrations._common import user_attribute as _user_attribute

__all__ = [
    "MeterstreamMiddleware",
    "RequestState",
    "StripeWebhook",
    "current_customer",
    "header",
    "path_param",
    "set_customer",
    "user_attribute",
]

#: The scope key holding the :class:`RequestState` of a request.
SCOPE_KEY = "meterstream"

#: How many distinct header values the header() fast path remembers.
_VALUES_KEPT = 4096
_UNSEEN: Any = object()

_COMPLETES = frozenset({"http.response.pathsend", "http.response.zerocopysend"})


def _header_value(raw: bytes) -> Optional[str]:
    """A header's value as a customer id: stripped; sent empty or blank, as it came
    (refused as a customer id, not taken for "no customer")."""
    try:
        value = raw.decode()  # UTF-8's fast path: ids are ASCII
    except UnicodeDecodeError:
        value = raw.decode("latin-1")  # what Starlette's Headers would give
    return value.strip() or value


class RequestState:
    """What the middleware knows about one request, in ``scope["meterstream"]``.

    Set when the middleware records request events or flushes each request.
    ``customer`` is the customer the request event is billed to: the
    resolver's answer, or what a :class:`set_customer` dependency set. For
    the current customer, use :func:`current_customer`.

    Attributes:
        customer: the customer id, or None.
    """

    __slots__ = ("customer",)

    def __init__(self, customer: Optional[str]) -> None:
        self.customer = customer


def user_attribute(path: str) -> Resolver:
    """A resolver reading the customer id at *path* on ``scope["user"]``.

    ``scope["user"]`` is set by Starlette's ``AuthenticationMiddleware``: add
    it outside (after, in ``add_middleware`` order) this middleware.
    Unauthenticated users, and a None along the path, mean no customer.

    Args:
        path: a dotted attribute path, e.g. ``"account.stripe_customer_id"``.

    Returns:
        The resolver.
    """
    return _user_attribute(path, lambda request: request.scope.get("user"))


def path_param(name: str) -> Resolver:
    """A resolver reading the customer id from the path parameter *name*.

    Path parameters exist once the route is matched, after the middleware ran:
    use it with :class:`set_customer`, as a dependency.

    Args:
        name: the path parameter, e.g. ``"account_id"``.

    Returns:
        The resolver: the parameter as a string, or None when the route has none.
    """

    def resolve(request: Any) -> Optional[str]:
        value = request.path_params.get(name)
        return None if value is None else str(value)

    resolve.__name__ = resolve.__qualname__ = f"path_param({name!r})"
    return resolve


class MeterstreamMiddleware:
    """Pure ASGI middleware: the request's customer for the request, request metering.

    HTTP requests run inside ``meterstream.customer(resolver(request))``;
    websocket connections too (nothing is metered for them). A request event
    is recorded when the response's last body message (``more_body`` false)
    has been sent, so streaming responses are billed once complete. On
    lifespan shutdown the client is flushed (``shutdown_timeout``) before the
    server is told shutdown is complete.

    Args:
        app: the ASGI app to wrap.
        customer_resolver: a callable taking a :class:`starlette.requests.Request`
            and returning a customer id or None, or a dotted path to one.
            None leaves the current customer alone.
        request_event: an event name: one use per response whose status is in
            *request_event_statuses*.
        request_event_statuses: statuses billed (ints, ``range``, ``"2xx"``);
            default 2xx.
        flush_each_request: flush after every request (serverless).
        flush_timeout: how long that flush may take, in seconds.
        flush_on_shutdown: flush when lifespan shutdown completes.
        client: the client to record and flush with; default the default client.

    Raises:
        ConfigurationError: a wrong option.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        customer_resolver: Any = None,
        request_event: Optional[str] = None,
        request_event_statuses: Any = None,
        flush_each_request: bool = False,
        flush_timeout: float = 2.0,
        flush_on_shutdown: bool = True,
        client: Optional[MeterClient] = None,
    ) -> None:
        self.app = app
        options = parse_options(
            {
                "customer_resolver": customer_resolver,
                "request_event": request_event,
                "request_event_statuses": request_event_statuses,
                "flush_each_request": flush_each_request,
                "flush_timeout": flush_timeout,
            },
            "MeterstreamMiddleware",
        )
        self.meter = RequestMeter(options, client)
        self.flush_on_shutdown = flush_on_shutdown
        self._raw_header = self.meter.raw_header
        #: header(): raw header value -> what the context variable holds for it.
        self._values: dict[bytes, Any] = {}
        #: A resolver and nothing to do after the response: the short path.
        self._plain = self.meter.resolver is not None and not self.meter.after_response

    @property
    def resolver_errors(self) -> int:
        """How many times the customer resolver failed."""
        return self.meter.resolver_errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and self._plain:
            # The common request, kept to the fewest steps: every request pays
            # it. No RequestState: nothing happens after the response.
            raw = self._raw_header
            if raw is None or _baggage.default_baggage.write:
                if raw is None:
                    customer = self.meter.resolve(Request(scope))
                else:
                    customer = self._header_customer(scope)
                entered = enter_customer(customer)
                try:
                    await self.app(scope, receive, send)
                finally:
                    exit_customer(entered)
                return
            # header(), no baggage to write: what enter_customer() does, with
            # the header's context value looked up rather than worked out.
            value = None
            for key, header_value in scope["headers"]:
                if key == raw:
                    value = self._values.get(header_value, _UNSEEN)
                    if value is _UNSEEN:
                        value = self._learn(header_value)
                    break
            token = CUSTOMER.set(value)
            try:
                await self.app(scope, receive, send)
            finally:
                CUSTOMER.reset(token)
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket" and self.meter.resolver is not None:
            customer = self._resolve(scope, HTTPConnection)
            scope[SCOPE_KEY] = RequestState(customer)
            with customer_block(customer):
                await self.app(scope, receive, send)
        elif kind == "lifespan" and self.flush_on_shutdown:
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _learn(self, raw_value: bytes) -> Any:
        """The context value for a header value not seen yet, remembered.

        Header values come from clients: the memory is bounded, and starts
        over when full.
        """
        value = context_value(_header_value(raw_value))
        values = self._values
        if len(values) >= _VALUES_KEPT:
            values.clear()
        values[raw_value] = value
        return value

    def _header_customer(self, scope: Scope) -> Optional[str]:
        # header(): read the raw header list, as Starlette's Headers.get does,
        # without building a Request (a measurable share of a small request).
        raw = self._raw_header
        for key, value in scope["headers"]:
            if key == raw:
                return _header_value(value)
        return None

    def _resolve(self, scope: Scope, connection: type[HTTPConnection]) -> Optional[str]:
        if self._raw_header is None:
            return self.meter.resolve(connection(scope))
        return self._header_customer(scope)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        meter = self.meter
        resolver = meter.resolver
        customer = _current_customer() if resolver is None else self._resolve(scope, Request)
        state = scope[SCOPE_KEY] = RequestState(customer)
        if not meter.after_response:
            await self.app(scope, receive, send)
            return

        status = 0
        complete = False

        async def send_and_watch(message: Message) -> None:
            nonlocal status, complete
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            await send(message)
            if (
                kind == "http.response.body" and not message.get("more_body", False)
            ) or kind in _COMPLETES:
                complete = True
                meter.record_request(state.customer, status)

        with customer_block(customer):
            await self.app(scope, receive, send_and_watch)
        if complete and meter.flush_each_request:
            await anyio.to_thread.run_sync(meter.flush)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        shutting_down = flushed = False

        async def flush() -> None:
            nonlocal flushed
            if not flushed:
                flushed = True
                client = self.meter.client
                await anyio.to_thread.run_sync(client.flush, client.settings.shutdown_timeout)

        async def receive_and_watch() -> Message:
            nonlocal shutting_down
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                shutting_down = True
            return message

        async def send_and_watch(message: Message) -> None:
            # Flush before the server hears "complete": after that it may
            # exit without waiting for our thread.
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await flush()
            await send(message)

        try:
            await self.app(scope, receive_and_watch, send_and_watch)
        finally:
            if shutting_down:
                await flush()


async def current_customer(request: Request) -> Optional[str]:
    """FastAPI dependency: the current customer (``Depends(current_customer)``).

    Async on purpose: FastAPI runs sync dependencies in a thread pool.

    Args:
        request: the request (FastAPI passes it).

    Returns:
        The current customer id, or None.
    """
    return _current_customer()


class set_customer:
    """FastAPI dependency factory: set the current customer from the request.

    ``Depends(set_customer(path_param("account_id")))`` or
    ``Depends(set_customer(header("X-Customer-Id")))``, on a route or a
    router (``dependencies=[...]``). The endpoint, the dependencies solved
    after this one, and the :class:`MeterstreamMiddleware` request event see
    the customer. A None answer leaves the current customer as it was.

    The dependency is async so that it runs in the request's own context:
    FastAPI runs sync dependencies in a thread pool, and a customer set there
    would never reach the endpoint.

    Args:
        resolver: a resolver (a callable taking the Request), or a dotted path.
        required: answer 401 when there is no customer.
    """

    def __init__(self, resolver: Any, *, required: bool = False) -> None:
        if resolver is None:
            raise ConfigurationError("set_customer: expected a resolver, got None")
        self.meter = RequestMeter(parse_options({"customer_resolver": resolver}, "set_customer"))
        self.required = required

    @property
    def resolver_errors(self) -> int:
        """How many times the resolver failed."""
        return self.meter.resolver_errors

    async def __call__(self, request: Request) -> Optional[str]:
        customer = self.meter.resolve(request)
        if customer is None:
            current = _current_customer()
            if current is None and self.required:
                raise HTTPException(status_code=401, detail="No customer for this request.")
            return current
        # Entered and never exited: the value lasts until the request's
        # context ends (the middleware's own block resets it).
        customer_block(customer).__enter__()
        state = request.scope.get(SCOPE_KEY)
        if isinstance(state, RequestState):
            state.customer = customer
        return customer

    # FastAPI reads a dependency's annotations to find the Request parameter.
    # Under ``from __future__ import annotations`` they are strings, and older
    # FastAPI versions (those installed on Python 3.9) resolve them only for
    # functions, not for the __call__ of an instance: give it the class.
    __call__.__annotations__["request"] = Request
