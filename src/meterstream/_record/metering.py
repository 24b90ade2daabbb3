"""``metering()``: meter a block of code, and the ``Usage`` handle it yields."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Callable, Optional

from meterstream._record.checks import (
    check_customer,
    check_dimensions,
    check_event_name,
    check_identifier,
    check_on_error,
)
from meterstream._record.context import CUSTOMER
from meterstream._record.events import identifier_prefix
from meterstream._record.recorder import Recorder
from meterstream.errors import InvalidEventError

__all__ = ["Usage", "metering"]

perf_counter = time.perf_counter


class Usage:
    """The handle a ``metering()`` block yields: set or add to its value.

    If the block never sets it, the value is 1. After the block,
    :attr:`identifier` is the identifier of the event it recorded.
    """

    __slots__ = ("_value", "identifier")

    def __init__(self) -> None:
        self._value: Any = None
        #: The identifier of the event the block recorded, once it exited
        #: (keep it to ``cancel()`` the use); None before, and when nothing
        #: was recorded of its own (dropped, invalid, an exception, aggregated).
        self.identifier: Optional[str] = None

    @property
    def value(self) -> Any:
        """The use to record when the block exits: 1 until set or added to.

        Set it to a number (int, float, ``Decimal`` or numeric string); it is
        checked when the block exits, like any recorded value.
        """
        return 1 if self._value is None else self._value

    @value.setter
    def value(self, value: Any) -> None:
        self._value = value

    def add(self, amount: Any = 1) -> None:
        """Add *amount* to the value (starting from 0, not from the default 1).

        Args:
            amount: a number (int, float or ``Decimal``) to add; default 1,
                to count things one at a time.
        """
        self._value = amount if self._value is None else self._value + amount

    def __repr__(self) -> str:
        return f"Usage(value={self.value!r})"


class _Entry:
    """One entry into a ``metering()`` block: its client, customer, usage and clock."""

    __slots__ = ("client", "customer", "started", "token", "usage")

    def __init__(self, client: Optional[Recorder], customer: Any, usage: Usage) -> None:
        self.client = client
        self.customer = customer
        self.usage = usage
        self.started = perf_counter()
        self.token: Optional[contextvars.Token[Optional[_Node]]] = None


#: The ``metering()`` blocks entered in this context, innermost first, as a
#: linked list ``(block, entry, outer)``. A context variable, so that threads
#: and asyncio tasks entering the same block object each find their own entry
#: when they leave it.
_Node = tuple["metering", _Entry, Any]
_ENTERED: contextvars.ContextVar[Optional[_Node]] = contextvars.ContextVar(
    "meterstream_metering", default=None
)


class metering:
    """Meter a block of code: ``with client.metering("gpu_seconds") as usage: ...``.

    Works with ``with`` and ``async with``. The use is recorded when the block
    exits; a block that raises records nothing unless ``on_error="record"``.

    The object can be kept and entered again, nested in itself, or entered
    from several threads and tasks at once: every entry takes the customer
    current at that moment and yields a fresh :class:`Usage`.
    """

    __slots__ = (
        "_customer",
        "_dimensions",
        "_error",
        "_event_name",
        "_get_client",
        "_identifier",
        "_on_error",
    )

    def __init__(
        self,
        get_client: Callable[[], Recorder],
        event_name: str,
        *,
        customer: Optional[str] = None,
        identifier: Optional[str] = None,
        dimensions: Optional[Mapping[str, str]] = None,
        on_error: str = "skip",
    ) -> None:
        self._get_client = get_client
        self._event_name: Any = event_name
        self._customer: Optional[str] = None
        self._identifier: Optional[str] = None
        self._dimensions: Optional[dict[str, str]] = None
        self._on_error = "skip"
        # Checked now, but refused only when the block is entered, by the
        # client: with raise_errors=False the block must run all the same.
        self._error: Optional[InvalidEventError] = None
        try:
            self._event_name = check_event_name(event_name)
            if customer is not None:  # "" is refused, naming it: not "no customer"
                self._customer = check_customer(customer)
            if identifier is not None:
                self._identifier = check_identifier(identifier)
            self._dimensions = check_dimensions(dimensions)
            self._on_error = check_on_error(on_error)
        except InvalidEventError as error:
            self._error = error

    def __enter__(self) -> Usage:
        client = self._get_client()
        if self._error is not None:
            if client.active:
                client.invalid(self._error, self._event_name)  # raises if raise_errors
            # The block runs and records nothing: the error is counted once.
            entry = _Entry(None, None, Usage())
            entry.token = _ENTERED.set((self, entry, _ENTERED.get()))
            return entry.usage
        customer: Any = self._customer or CUSTOMER.get()
        if customer is None and client.active:
            customer = client.customer_at_start(self._event_name)
        entry = _Entry(client, customer, Usage())
        entry.token = _ENTERED.set((self, entry, _ENTERED.get()))
        return entry.usage

    def _leave(self) -> Optional[_Entry]:
        """Take this block's innermost entry off the context's list."""
        node = _ENTERED.get()
        top = node
        while node is not None and node[0] is not self:
            node = node[2]
        if node is None:
            return None  # left in another context than it was entered in
        entry = node[1]
        if node is top and entry.token is not None:
            try:
                _ENTERED.reset(entry.token)
                return entry
            except ValueError:  # the token belongs to another context
                pass
        _ENTERED.set(_without(top, node))
        return entry

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        entry = self._leave()
        if entry is None:
            return
        client = entry.client
        if client is None or not client.active:
            return
        if exc is not None and self._on_error != "record":
            return
        recorded = client.record_use(
            self._event_name,
            entry.usage.value,
            entry.customer,
            self._identifier,
            self._dimensions,
            None,
        )
        if recorded is not None:
            entry.usage.identifier = (
                recorded if type(recorded) is str else identifier_prefix() + str(recorded)
            )

    async def __aenter__(self) -> Usage:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def _without(top: Optional[_Node], gone: _Node) -> Optional[_Node]:
    """The list *top* without the node *gone* (blocks left out of order)."""
    kept: list[_Node] = []
    node = top
    while node is not None and node is not gone:
        kept.append(node)
        node = node[2]
    rest: Optional[_Node] = gone[2]
    for block, entry, _ in reversed(kept):
        entry.token = None  # it would restore a list that still holds *gone*
        rest = (block, entry, rest)
    return rest
