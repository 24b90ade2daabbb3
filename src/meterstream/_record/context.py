"""The current customer, carried by the stdlib :mod:`contextvars`.

Threads and asyncio tasks each see their own value; a task created inside a
``customer()`` block inherits it (asyncio copies the context at task creation),
and so does ``asyncio.to_thread``. Plain thread pools do not copy contexts:
wrap the callable with :func:`bind_context`.
"""

from __future__ import annotations

import contextvars
import functools
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar

from meterstream._record import baggage as _baggage
from meterstream._record.baggage import Baggage
from meterstream._record.checks import (
    NOT_A_CUSTOMER,
    InvalidCustomer,
    check_customer,
    known_customers,
)
from meterstream.errors import InvalidEventError

__all__ = ["bind_context", "current_customer", "customer"]

_T = TypeVar("_T")

#: The current customer: a string, None, or an InvalidCustomer wrapper.
CUSTOMER: contextvars.ContextVar[Any] = contextvars.ContextVar("meterstream_customer", default=None)


def current_customer() -> Optional[str]:
    """The customer of the innermost enclosing :func:`customer` block.

    Outside any block, the customer a calling service put in OpenTelemetry
    baggage (the default client's ``otel_baggage_key``), or None.

    Returns:
        The current customer id, or None when there is none.
    """
    return customer_seen_by(_baggage.default_baggage)


def customer_seen_by(baggage: Baggage) -> Optional[str]:
    """:func:`current_customer`, falling back to the baggage under *baggage*'s key."""
    value = CUSTOMER.get()
    if value is None:
        return baggage.customer()
    if type(value) is InvalidCustomer:
        # An id Stripe cannot bill is shown as it was given; a non-string, not at all.
        return value.value if type(value.value) is str else None
    return value  # type: ignore[no-any-return]


#: What entering a block changed: the context variable's token, and the
#: OpenTelemetry context token when the customer went into baggage too.
_Entered = tuple["contextvars.Token[Any]", Optional[object]]


def context_value(customer_id: Any) -> Any:
    """What the context variable holds for *customer_id*.

    None is no customer. An id Stripe cannot bill (an empty or blank string
    included), or something that is not a string at all, is kept wrapped, so
    records in the block are refused (raise_errors decides how loudly)
    without a per-record check, and entering the block never raises.
    """
    if type(customer_id) is not str:
        if customer_id is None:
            return None
        if not isinstance(customer_id, str):
            return InvalidCustomer(customer_id, NOT_A_CUSTOMER)
        customer_id = str.__str__(customer_id)  # a str subclass, as a plain str
    try:
        # An id seen before is found in a set; one checked now is remembered.
        return check_customer(customer_id)
    except InvalidEventError as error:
        return InvalidCustomer(customer_id, error.reason)


def _usable_id(value: Any) -> Optional[str]:
    """The id a context value stands for, as a string, or None."""
    if type(value) is str:
        return value
    if type(value) is InvalidCustomer and type(value.value) is str:
        return value.value
    return None


def _enter(value: Any, customer_id: Optional[str], baggage: Optional[Baggage]) -> _Entered:
    token = CUSTOMER.set(value)
    if baggage is None:
        baggage = _baggage.default_baggage
    if not baggage.write:
        return token, None
    # Also in OpenTelemetry baggage, for services downstream.
    return token, baggage.attach(customer_id if type(value) is str else None)


def enter_customer(customer_id: Optional[str], baggage: Optional[Baggage] = None) -> _Entered:
    """Enter ``customer(customer_id)`` without making the object; for middleware.

    A request's hot path: about half the cost of a ``with`` block. Leave with
    :func:`exit_customer`, in the same context, in reverse order. *baggage*:
    the client whose baggage key to write; default the default client's.
    """
    value = context_value(customer_id)
    return _enter(value, _usable_id(value), baggage)


def exit_customer(entered: _Entered) -> None:
    """Leave what :func:`enter_customer` (or a ``customer`` block) entered."""
    token, baggage_token = entered
    if baggage_token is not None:
        _baggage.detach(baggage_token)
    CUSTOMER.reset(token)


_set_customer = CUSTOMER.set
_reset_customer = CUSTOMER.reset


class customer:
    """Set the current customer for the duration of a ``with`` (or ``async with``) block.

    Every use recorded inside the block, by any client, is billed to this
    customer unless the use names its own. Blocks nest: leaving an inner block
    restores the outer customer. ``customer(None)`` clears it for the block.

    Args:
        customer_id: the Stripe customer id (``"cus_..."``), or None.

    Entering the block never raises: an id Stripe cannot bill (blank,
    unprintable, padded with whitespace) or anything that is not a string
    makes every record inside the block an invalid event, naming the
    ``customer`` field (raised with ``raise_errors=True``, else dropped,
    counted and logged), and the code in the block runs as usual.

    Example::

        with meterstream.customer("cus_123"):
            search("shoes")
    """

    __slots__ = ("_baggage", "_customer_id", "_entered", "_value")

    def __init__(self, customer_id: Optional[str]) -> None:
        if type(customer_id) is str and customer_id in known_customers:
            self._value: Any = customer_id  # checked before: the common case, without a call
            self._customer_id: Optional[str] = customer_id
        else:
            self._value = context_value(customer_id)
            self._customer_id = _usable_id(self._value)
        #: Whose baggage key the block writes; None: the default client's,
        #: as it is when the block is entered.
        self._baggage: Optional[Baggage] = None
        #: One (token, baggage token) per entry not yet left, oldest first:
        #: several when threads or tasks are inside the block at once, or
        #: the block is nested in itself.
        self._entered: list[_Entered] = []

    # Every block pays for these two: what _enter and exit_customer do,
    # written out.
    def __enter__(self) -> Optional[str]:
        baggage = self._baggage or _baggage.default_baggage
        if baggage.write:
            token = _set_customer(self._value)
            # Also in OpenTelemetry baggage, for services downstream.
            written = baggage.attach(self._customer_id if type(self._value) is str else None)
            self._entered.append((token, written))
        else:
            self._entered.append((_set_customer(self._value), None))
        return self._customer_id

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        entered = self._entered
        try:
            entry = entered[-1]
        except IndexError:  # (even while other threads leave it at once)
            return  # not entered: nothing to undo
        try:
            _reset_customer(entry[0])
        except (ValueError, RuntimeError):
            # Another thread's or task's entry is the newest (a token resets
            # only in the context that made it): look for this context's.
            self._exit_other(entered)
            return
        entered.remove(entry)
        if entry[1] is not None:
            _baggage.detach(entry[1])

    def _exit_other(self, entered: list[_Entered]) -> None:
        """Leave the newest entry made in this context, if any: a task created
        inside the block inherits its context, but not the entry to leave."""
        for entry in reversed(entered.copy()):
            try:
                _reset_customer(entry[0])
            except (ValueError, RuntimeError):  # another context's, or undone already
                continue
            entered.remove(entry)
            if entry[1] is not None:
                _baggage.detach(entry[1])
            return

    async def __aenter__(self) -> Optional[str]:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"customer({self._customer_id!r})"


def customer_for(customer_id: Optional[str], baggage: Baggage) -> customer:
    """A :class:`customer` block that writes *baggage*'s key: ``client.customer()``."""
    block = customer(customer_id)
    block._baggage = baggage
    return block


def bind_context(fn: Callable[..., _T]) -> Callable[..., _T]:
    """Return *fn* bound to a copy of the current context, customer included.

    Thread pools run work in the context of their worker thread, not of the
    code that submitted it; bind first to carry the customer across::

        with meterstream.customer("cus_123"):
            pool.submit(meterstream.bind_context(search), "shoes")

    Args:
        fn: any callable.

    Returns:
        A callable that runs *fn* in a copy of the context captured now (a
        fresh copy per call, so it may run in several threads at once).
    """
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> _T:
        # A context can be entered by one thread at a time: copy per call so
        # the bound callable can run in several workers at once.
        return ctx.copy().run(fn, *args, **kwargs)

    return run
