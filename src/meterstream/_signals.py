"""``drain_on_sigterm()``: deliver what is buffered when the process gets SIGTERM.

Containers stop a process with SIGTERM. Its default action ends the process at
once, without ``atexit``, so events still in the buffer are lost. Some servers
turn SIGTERM into an orderly exit (and so run ``atexit``); others do not (see
docs/delivery.md for the table). This is the opt-in for the others: the library
never installs a signal handler by itself.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType
from typing import Callable, Optional, Union

from meterstream._client import live as _live_clients
from meterstream._internal import report_internal_error

__all__ = ["drain_on_sigterm"]

_Handler = Union[Callable[[int, Optional[FrameType]], object], int, None]

#: What SIGTERM did before drain_on_sigterm() took it over.
_previous: _Handler = signal.SIG_DFL
#: Set while this process drains; a second SIGTERM then skips the wait.
_draining = False


def drain_on_sigterm() -> None:
    """On SIGTERM, deliver every client's buffered events, then let SIGTERM go on.

    Call it once at start-up, from the main thread (for example in the module
    that builds your WSGI/ASGI app, or in ``settings.py``). On SIGTERM the
    handler:

    - when SIGTERM had its default action: shuts every client down (delivering
      within its ``shutdown_timeout``), then ends the process by SIGTERM as the
      default action would (exit status 143 / -15);
    - when the application or its server had a handler: flushes every client
      (within ``shutdown_timeout``), then calls that handler, so the server's
      own orderly shutdown goes on as before;
    - when SIGTERM was ignored: flushes, and the process goes on.

    A second SIGTERM while draining skips the wait. Calling this again is a
    no-op while the handler is in place. A forked child inherits the handler
    and drains its own clients.

    Raises:
        RuntimeError: not called from the main thread (Python only lets the
            main thread install signal handlers), or SIGTERM's handler was
            installed outside Python and cannot be chained.
    """
    global _previous
    if not hasattr(signal, "SIGTERM"):  # pragma: no cover - every POSIX and Windows has it
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is _on_sigterm:
        return
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "meterstream.drain_on_sigterm() must be called from the main thread: Python "
            "installs signal handlers only there (call it at start-up, e.g. in settings.py "
            "or the module that builds your app)"
        )
    if current is None:
        raise RuntimeError(
            "meterstream.drain_on_sigterm(): SIGTERM has a handler installed outside Python, "
            "which cannot be chained; call meterstream.shutdown() from it instead"
        )
    _previous = current
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    global _draining
    previous = _previous
    if not _draining:
        _draining = True
        try:
            _drain(final=previous == signal.SIG_DFL)
        finally:
            _draining = False
    if previous == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
    elif callable(previous):
        previous(signum, frame)
    # SIG_IGN: the process goes on, as it would have.


def _drain(*, final: bool) -> None:
    """Flush (or, before the process ends, shut down) every client, bounded in time.

    The work runs on its own thread and the handler waits for it with a
    deadline: the main thread may have been interrupted while holding a lock
    that delivery needs, and a handler must never hang the process.
    """
    clients = _live_clients.snapshot()
    if not clients:
        return
    budget = max(client.settings.shutdown_timeout for client in clients)

    def drain() -> None:
        deadline = time.monotonic() + budget
        for client in clients:
            left = max(0.0, deadline - time.monotonic())
            try:
                if final:
                    client.shutdown(left)
                else:
                    client.flush(left)
            except Exception as exc:  # a handler must not raise into the app
                report_internal_error(exc)

    worker = threading.Thread(target=drain, name="meterstream-sigterm-drain", daemon=True)
    worker.start()
    # A little past the budget: shutdown() abandons requests at its deadline.
    worker.join(budget + 1.0)


def _after_fork_in_child() -> None:
    global _draining
    _draining = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
