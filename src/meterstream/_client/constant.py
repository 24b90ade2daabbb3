"""``record_constant``: the hot path of ``@meter`` with a constant value,
compiled per client with the buffer's append written in.

On the fast path a constant-value record is a clock read, a counter and the
buffer's append; a call to ``Buffer.put`` would cost a tenth of it, so the
append is compiled in from the one text that defines it
(:meth:`Buffer.compile_appender`). Anything else (a fork, delivery threads
not started, span events, disabled names, sync mode, a closed client, a
customer that is not a plain string, dimensions) goes to *general*.
"""

from __future__ import annotations

from typing import Any, Callable

from meterstream._delivery.buffer import Buffer
from meterstream._record.events import next_sequence
from meterstream._record.fork import Canary

__all__ = ["compile_record_constant"]


def compile_record_constant(
    buffer: Buffer,
    *,
    canary: Canary,
    client: object,
    general: Callable[..., Any],
    clock: Callable[[], float],
    queue_full: Callable[[], object],
) -> Callable[..., Any]:
    """``record_constant(event_name, value, customer, dimensions)`` for *client*.

    Args:
        buffer: the in-memory buffer appended to.
        canary: the client's fork canary (0 after a fork).
        client: read for its ``_slow`` flag on every call: True sends the
            use to *general*.
        general: the checked path, with the same arguments.
        clock: the wall clock (the event's timestamp).
        queue_full: called when the overflow policy drops the use.
    """
    return buffer.compile_appender(
        "record_constant",
        "event_name, value, customer, dimensions",
        head=(
            "    if not canary[0] or client._slow or type(customer) is not str"
            " or dimensions is not None:\n"
            "        return general(event_name, value, customer, dimensions)\n"
        ),
        item="(event_name, customer, value, clock(), next_sequence(), None)",
        full="queue_full(); return False",
        env={
            "canary": canary,
            "client": client,
            "general": general,
            "clock": clock,
            "next_sequence": next_sequence,
            "queue_full": queue_full,
        },
    )
