"""What every web integration shares: options, customer resolvers, per-request metering.

The framework modules only translate their request/response shapes into the
calls of :class:`RequestMeter`, so the three behave the same way.
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional

from meterstream._client.client import MeterClient
from meterstream._config.parsing import import_dotted, parse_bool, parse_number
from meterstream._config.settings import SETTING_NAMES
from meterstream._default import get_client
from meterstream._internal import RateLimitedLog
from meterstream._record.checks import check_event_name
from meterstream._record.context import customer as customer_block
from meterstream.errors import ConfigurationError, InvalidEventError, MeterError

__all__ = [
    "OPTION_NAMES",
    "IntegrationOptions",
    "RequestMeter",
    "Resolver",
    "header",
    "load_resolver",
    "parse_options",
    "split_settings",
    "user_attribute",
]

logger = logging.getLogger("meterstream")

#: A customer resolver: takes the framework's request, returns a customer id or None.
Resolver = Callable[[Any], Optional[str]]

#: Options of the integrations; they sit beside the core settings in
#: ``METERSTREAM`` / ``app.config["METERSTREAM"]`` but are not core settings.
OPTION_NAMES = (
    "customer_resolver",
    "request_event",
    "request_event_statuses",
    "flush_each_request",
    "flush_timeout",
)

DEFAULT_STATUSES = frozenset(range(200, 300))

#: Set on resolvers that only read headers, so async code may call them
#: directly (anything else may touch a database: Django runs it in a thread).
ASYNC_SAFE = "_meterstream_async_safe"
#: Set on :func:`header` resolvers: the header's name, lowercased, as bytes,
#: for middleware that can read raw headers without building a request.
RAW_HEADER = "_meterstream_raw_header"


# -- resolvers -------------------------------------------------------------------


def header(name: str) -> Resolver:
    """A resolver that reads the customer id from the request header *name*.

    Only trust it behind a proxy or gateway that authenticates the caller and
    sets (or strips) this header itself: otherwise any client can bill any
    customer by sending it.

    Args:
        name: the header, case-insensitive (``"X-Customer-Id"``).

    Returns:
        The resolver: the header's value, stripped, or None when absent. A
        header sent empty or blank is given as it came, so that its records
        are refused naming the customer, not taken for "no customer".

    Raises:
        ConfigurationError: *name* is not a non-empty string.
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"header(): expected a header name, got {name!r}")

    def resolve(request: Any) -> Optional[str]:
        value = request.headers.get(name)
        if value is None:
            return None
        return value.strip() or value  # type: ignore[no-any-return]

    resolve.__name__ = resolve.__qualname__ = f"header({name!r})"
    setattr(resolve, ASYNC_SAFE, True)
    setattr(resolve, RAW_HEADER, name.lower().encode("latin-1"))
    return resolve


def user_attribute(path: str, get_user: Callable[[Any], Any]) -> Resolver:
    """A resolver that follows the dotted attribute *path* from the request's user.

    ``get_user(request)`` returns the user (None when there is none). An
    anonymous user (``is_authenticated`` false), or a None anywhere along the
    path, means no customer.
    """
    if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
        raise ConfigurationError(
            f"user_attribute(): expected a dotted attribute path such as "
            f"'profile.stripe_customer_id', got {path!r}"
        )
    parts = path.split(".")

    def resolve(request: Any) -> Optional[str]:
        obj = get_user(request)
        if obj is None or not getattr(obj, "is_authenticated", True):
            return None
        for part in parts:
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return obj  # type: ignore[no-any-return]  # checked by RequestMeter.resolve

    resolve.__name__ = resolve.__qualname__ = f"user_attribute({path!r})"
    return resolve


def load_resolver(raw: Any, where: str) -> Optional[Resolver]:
    """A resolver from a setting: None, a callable, or a dotted path to one."""
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = import_dotted(raw, where)
    if not callable(raw):
        raise ConfigurationError(
            f"{where}: expected a callable taking the request (or a dotted path to one), "
            f"got {raw!r}"
        )
    return raw  # type: ignore[no-any-return]


# -- options ---------------------------------------------------------------------


@dataclass(frozen=True)
class IntegrationOptions:
    """The per-request behaviour of a middleware.

    Attributes:
        customer_resolver: who the customer of a request is; None leaves the
            current customer alone.
        request_event: record one use of this event name per response whose
            status is in *request_event_statuses*; None records nothing.
        request_event_statuses: the statuses that are billed (2xx by default).
        flush_each_request: flush at the end of every request (serverless).
        flush_timeout: how long that flush may wait, in seconds.
    """

    customer_resolver: Optional[Resolver] = None
    request_event: Optional[str] = None
    request_event_statuses: frozenset[int] = DEFAULT_STATUSES
    flush_each_request: bool = False
    flush_timeout: float = 2.0


def parse_statuses(raw: Any, where: str) -> frozenset[int]:
    """HTTP statuses from ints, ``range`` objects and ``"2xx"``-style strings."""
    items = [raw] if isinstance(raw, (int, str, range)) else raw
    if not isinstance(items, Iterable):
        raise ConfigurationError(
            f"{where}: expected status codes such as [200, '2xx'], got {raw!r}"
        )
    statuses: set[int] = set()
    for item in items:
        if isinstance(item, range):
            statuses.update(item)
        elif isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
            statuses.add(item)
        elif (
            isinstance(item, str)
            and len(item) == 3
            and item[0] in "12345"
            and item[1:].lower() == "xx"
        ):
            low = int(item[0]) * 100
            statuses.update(range(low, low + 100))
        elif isinstance(item, str) and item.isdigit() and 100 <= int(item) <= 599:
            statuses.add(int(item))
        else:
            raise ConfigurationError(
                f"{where}: expected status codes (100..599) or classes such as '2xx', got {item!r}"
            )
    if not statuses:
        raise ConfigurationError(f"{where}: no status codes given")
    return frozenset(statuses)


def parse_options(raw: Mapping[str, Any], where: str) -> IntegrationOptions:
    """Validate the integration options of *raw* (other keys are ignored).

    Raises:
        ConfigurationError: naming ``where[option]``.
    """
    resolver = load_resolver(raw.get("customer_resolver"), f"{where}['customer_resolver']")
    event = raw.get("request_event")
    if event is not None:
        try:
            event = check_event_name(event)
        except InvalidEventError as exc:
            raise ConfigurationError(f"{where}['request_event']: {exc}") from None
    statuses = DEFAULT_STATUSES
    if raw.get("request_event_statuses") is not None:
        statuses = parse_statuses(
            raw["request_event_statuses"], f"{where}['request_event_statuses']"
        )
    flush_each = False
    if raw.get("flush_each_request") is not None:
        flush_each = parse_bool(raw["flush_each_request"], f"{where}['flush_each_request']")
    flush_timeout = 2.0
    if raw.get("flush_timeout") is not None:
        flush_timeout = float(
            parse_number(raw["flush_timeout"], f"{where}['flush_timeout']", integer=False, low=0)
        )
    return IntegrationOptions(resolver, event, statuses, flush_each, flush_timeout)


def split_settings(raw: Any, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a ``METERSTREAM`` mapping into (core settings, integration options).

    Raises:
        ConfigurationError: *raw* is not a mapping, or has a key that is
            neither (with a "did you mean" hint over both lists).
    """
    if raw is None:
        return {}, {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{where}: expected a dict of settings, got {raw!r}")
    core: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, value in raw.items():
        if key in OPTION_NAMES:
            options[key] = value
        elif key in SETTING_NAMES:
            core[key] = value
        else:
            close = difflib.get_close_matches(str(key), (*SETTING_NAMES, *OPTION_NAMES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(f"{where}: unknown setting {key!r}{hint}")
    return core, options


# -- per request -------------------------------------------------------------------


class RequestMeter:
    """The framework-neutral half of a middleware.

    Args:
        options: what to do for each request.
        client: the client to record the request event with and to flush;
            default the default client at the time of the request.

    Attributes:
        resolver_errors: how many times the resolver raised or returned
            something that is not a customer id.
        request_event_errors: how many request events could not be recorded.
    """

    def __init__(self, options: IntegrationOptions, client: Optional[MeterClient] = None) -> None:
        self.options = options
        self.resolver = options.customer_resolver
        self.resolver_async_safe = bool(getattr(self.resolver, ASYNC_SAFE, False))
        self.raw_header: Optional[bytes] = getattr(self.resolver, RAW_HEADER, None)
        self.request_event = options.request_event
        self.statuses = options.request_event_statuses
        self.flush_each_request = options.flush_each_request
        #: Something to do once the response is complete.
        self.after_response = self.request_event is not None or self.flush_each_request
        self._client = client
        self._log = RateLimitedLog()
        self._lock = threading.Lock()
        self.resolver_errors = 0
        self.request_event_errors = 0

    @property
    def client(self) -> MeterClient:
        return self._client if self._client is not None else get_client()

    def resolve(self, request: Any) -> Optional[str]:
        """The request's customer; None when there is none or the resolver failed.

        Never raises: a resolver that raises is counted and logged (at most
        once a minute) and the request goes on without a customer.
        """
        resolver = self.resolver
        if resolver is None:
            return None
        try:
            value = resolver(request)
        except Exception as exc:
            self._resolver_error("customer resolver %r raised %r", resolver, exc)
            return None
        if value is None:
            return None  # an empty string is a customer id, refused as one
        if not isinstance(value, str):
            self._resolver_error(
                "customer resolver %r returned %r; expected a customer id string or None",
                resolver,
                value,
            )
            return None
        return value

    def _resolver_error(self, msg: str, *args: object) -> None:
        with self._lock:
            self.resolver_errors += 1
        self._log.log(
            logging.ERROR,
            "resolver",
            msg + "; the request goes on without a customer",
            *args,
        )

    def wants_event(self, status: int) -> bool:
        return self.request_event is not None and status in self.statuses

    def record_request(self, customer: Optional[str], status: int) -> None:
        """Record the request event for a completed response, if its status is billed."""
        if self.request_event is None or status not in self.statuses:
            return
        client = self.client
        if not client.active:
            return
        try:
            # The name was checked with the options; the request's own
            # customer (None follows on_missing_customer like any record) is
            # checked here. No customer() block: every response pays this.
            client.record_use(self.request_event, 1, customer, None, None, None)
        except MeterError as exc:
            # raise_errors / on_missing_customer="raise": the response is
            # already made; failing it now would bill nobody and break the app.
            with self._lock:
                self.request_event_errors += 1
            self._log.log(
                logging.WARNING,
                "request_event",
                "could not record request event %r: %s",
                self.request_event,
                exc,
            )

    def flush(self) -> None:
        """Flush the client (``flush_each_request``); logs when it ran out of time."""
        timeout = self.options.flush_timeout
        if not self.client.flush(timeout):
            self._log.log(
                logging.WARNING,
                "flush",
                "flush at the end of a request did not finish within %ss",
                timeout,
            )

    def finish(self, customer: Optional[str], status: int) -> None:
        """Everything that happens once a response is complete (synchronous servers)."""
        self.record_request(customer, status)
        if self.flush_each_request:
            self.flush()


def iterate_as(
    customer: Optional[str], content: Iterable[Any], on_complete: Callable[[], None]
) -> Iterator[Any]:
    """Iterate a streaming body with *customer* current while each chunk is made.

    The server iterates a streaming body after the middleware has returned;
    each step runs in its own ``customer`` block (never held across a
    ``yield``, so the customer cannot leak into the server's code between
    chunks). *on_complete* runs once the body is exhausted.
    """
    iterator = iter(content)
    try:
        while True:
            with customer_block(customer):
                try:
                    chunk = next(iterator)
                except StopIteration:
                    break
            yield chunk
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
    on_complete()


async def aiterate_as(
    customer: Optional[str], content: AsyncIterable[Any], on_complete: Callable[[], Any]
) -> AsyncIterator[Any]:
    """:func:`iterate_as` for an async streaming body; *on_complete* may be async."""
    iterator = content.__aiter__()
    try:
        while True:
            with customer_block(customer):
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
            yield chunk
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    result = on_complete()
    if result is not None:
        await result
