"""``record_constant``: the hot path of ``@meter`` with a constant value,
compiled per client with the buffer's append written in.

On the fast path a constant-value record is a clock read, a counter and the
buffer's append; a call to ``Buffer.put`` would cost a tenth of it, so the
append is compiled in from the one text that defines it
(:meth:`Buffer.compile_appender`). Whether the fast path is open is the
:class:`RecordPath`'s call (its ``canary`` and ``slow``); a customer that is
not a plain string, or dimensions, go to *general* as well.
"""

from __future__ import annotations

from typing import Any, Callable

from meterstream._client.record_path import RecordPath
from meterstream._delivery.buffer import Buffer
from meterstream._record.events import next_sequence

__all__ = ["compile_record_constant"]


def compile_record_constant(
    buffer: Buffer,
    *,
    path: RecordPath,
    general: Callable[..., Any],
    clock: Callable[[], float],
    queue_full: Callable[[], object],
) -> Callable[..., Any]:
    """``record_constant(event_name, value, customer, dimensions)`` for a client.

    Args:
        buffer: the in-memory buffer appended to.
        path: the client's record path, read on every call: a fork (its
            canary reads 0) or ``slow`` sends the use to *general*.
        general: the checked path, with the same arguments.
        clock: the wall clock (the event's timestamp).
        queue_full: called when the overflow policy drops the use.
    """
    return buffer.compile_appender(
        "record_constant",
        "event_name, value, customer, dimensions",
        head=(
            "    if not canary[0] or path.slow or type(customer) is not str"
            " or dimensions is not None:\n"
            "        return general(event_name, value, customer, dimensions)\n"
        ),
        item="(event_name, customer, value, clock(), next_sequence(), None)",
        full="queue_full(); return False",
        env={
            # The same canary object for the client's life (re-armed in place).
            "canary": path.canary,
            "path": path,
            "general": general,
            "clock": clock,
            "next_sequence": next_sequence,
            "queue_full": queue_full,
        },
    )
