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


def _context_value(customer_id: Any) -> Any:
    """What the context variable holds for *customer_id*.

    An empty id is no id: "no customer" at record time. An id Stripe cannot
    bill, or something that is not a string at all, is kept wrapped, so
    records in the block are refused (raise_errors decides how loudly)
    without a per-record check, and entering the block never raises.
    """
    if type(customer_id) is not str:
        if customer_id is None:
            return None
        if not isinstance(customer_id, str):
            return InvalidCustomer(customer_id, NOT_A_CUSTOMER)
        customer_id = str.__str__(customer_id)  # a str subclass, as a plain str
    if not customer_id:
        return None
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
    value = _context_value(customer_id)
    return _enter(value, _usable_id(value), baggage)


def exit_customer(entered: _Entered) -> None:
    """Leave what :func:`enter_customer` (or a ``customer`` block) entered."""
    token, baggage_token = entered
    if baggage_token is not None:
        _baggage.detach(baggage_token)
    CUSTOMER.reset(token)


#: The blocks open in a context, innermost first: ``(block, token,
#: baggage_token, outer)`` each, held by a context variable, so that threads
#: and tasks entering the same block object at once each leave their own.
_OpenBlocks = Optional[tuple[Any, ...]]
_OPEN: contextvars.ContextVar[_OpenBlocks] = contextvars.ContextVar(
    "meterstream_customer_blocks", default=None
)
_set_customer = CUSTOMER.set
_reset_customer = CUSTOMER.reset
_open_blocks = _OPEN.get
_set_open_blocks = _OPEN.set


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

    __slots__ = ("_baggage", "_customer_id", "_value")

    def __init__(self, customer_id: Optional[str]) -> None:
        if type(customer_id) is str and customer_id in known_customers:
            self._value: Any = customer_id  # checked before: the common case, without a call
            self._customer_id: Optional[str] = customer_id
        else:
            self._value = _context_value(customer_id)
            self._customer_id = _usable_id(self._value)
        #: Whose baggage key the block writes; None: the default client's,
        #: as it is when the block is entered.
        self._baggage: Optional[Baggage] = None

    # Every block entry pays for these two: what _enter and exit_customer
    # do, written out, and the list of open blocks in tuples.
    def __enter__(self) -> Optional[str]:
        baggage = self._baggage or _baggage.default_baggage
        if baggage.write:
            token = _set_customer(self._value)
            # Also in OpenTelemetry baggage, for services downstream.
            written = baggage.attach(self._customer_id if type(self._value) is str else None)
            _set_open_blocks((self, token, written, _open_blocks()))
        else:
            _set_open_blocks((self, _set_customer(self._value), None, _open_blocks()))
        return self._customer_id

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        entry = _open_blocks()
        if entry is not None and entry[0] is self:
            _set_open_blocks(entry[3])  # the innermost block: the common case
        else:
            top = entry
            while entry is not None and entry[0] is not self:
                entry = entry[3]
            if entry is None:
                return  # not entered in this context: nothing of ours to undo here
            _set_open_blocks(_without(top, entry))  # left out of order
        if entry[2] is not None:
            _baggage.detach(entry[2])
        _reset_customer(entry[1])

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


def _without(top: _OpenBlocks, gone: tuple[Any, ...]) -> _OpenBlocks:
    """The list *top* without *gone* (blocks left out of order), copied, not changed."""
    kept = []
    entry = top
    while entry is not None and entry is not gone:
        kept.append(entry)
        entry = entry[3]
    rest: _OpenBlocks = gone[3]
    for old in reversed(kept):
        rest = (old[0], old[1], old[2], rest)
    return rest


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
