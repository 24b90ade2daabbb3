"""Every live client: shut down at exit, made usable again in a forked child."""

from __future__ import annotations

import atexit
import itertools
import os
import threading
import weakref
from typing import TYPE_CHECKING, Optional, Protocol

from meterstream._internal import report_internal_error

if TYPE_CHECKING:
    from meterstream._config.settings import Settings

__all__ = ["LiveClient", "live_clients", "new_client_name", "register", "snapshot", "unregister"]


class LiveClient(Protocol):
    """What the registry (and the SIGTERM drain) needs of a client."""

    @property
    def settings(self) -> Settings: ...

    def flush(self, timeout: Optional[float] = 5.0) -> bool: ...

    def shutdown(self, timeout: Optional[float] = None) -> bool: ...

    def _after_fork_in_child(self) -> None: ...


_clients: weakref.WeakSet[LiveClient] = weakref.WeakSet()
_client_numbers = itertools.count()
_clients_lock = threading.Lock()


def new_client_name() -> str:
    """A name for a new client, unique in this process (``client-0``, ...)."""
    return f"client-{next(_client_numbers)}"


def register(client: LiveClient) -> None:
    with _clients_lock:
        _clients.add(client)


def unregister(client: LiveClient) -> None:
    with _clients_lock:
        _clients.discard(client)


def live_clients() -> list[LiveClient]:
    with _clients_lock:
        return list(_clients)


def snapshot() -> list[LiveClient]:
    """The live clients without taking the lock (for a signal handler).

    The interrupted main thread may hold the lock; a WeakSet copy under the
    GIL is safe but can race with another thread adding a client, so try
    again then.
    """
    for _ in range(100):
        try:
            return list(_clients)
        except RuntimeError:
            continue
    return []


def _shutdown_all_at_exit() -> None:
    for client in live_clients():
        try:
            client.shutdown()  # each client's own shutdown_timeout
        except Exception as exc:  # at exit, nothing is worth a traceback
            report_internal_error(exc)


def _after_fork_in_child() -> None:
    global _clients_lock
    _clients_lock = threading.Lock()
    for client in list(_clients):
        client._after_fork_in_child()


atexit.register(_shutdown_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
