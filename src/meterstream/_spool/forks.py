"""Forks and the spool: no thread of the spool is inside SQLite, or half way
through the journal, at the moment a process forks.

SQLite holds mutexes of its own (its allocator's, its table of file locks)
while a thread is inside a call; the child of a fork taken meanwhile starts
with them held by a thread it does not have, and its first SQLite call waits
forever. Every call the spool makes into SQLite is made under its
connection's lock (the checkpoint thread's, under ``checkpoint._IN_SQLITE``),
so a fork that holds those locks has no spool thread inside SQLite. Before
a fork, :func:`_before` takes the locks of every open spool (its journal's,
then its connection's) in the order the spool's own code nests them, and
gives them back in the parent and in the child after it: the child inherits
none held. A lock held past :data:`FORK_PATIENCE` (a thread stuck, or the
forking thread itself inside the spool) is passed over rather than have the
fork wait for ever.

The journal directory's lock is a ``flock`` on an open file: a child that
inherited the descriptor would hold the parent's lock for as long as it
lives. Such descriptors are kept in :data:`directory_fds` (opened and closed
under :data:`fds_lock`, which a fork holds too), and the child closes those
it inherited.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Protocol

__all__ = ["FORK_PATIENCE", "directory_fds", "fds_lock", "holds", "track", "untrack"]

#: Seconds a fork waits for one of a spool's locks before passing it over.
FORK_PATIENCE = 10.0


class _Locked(Protocol):
    def fork_locks(self) -> list[Any]: ...


_spools: weakref.WeakSet[Any] = weakref.WeakSet()
_held: list[Any] = []
#: Held while a directory lock's descriptor is opened or closed, and across a fork.
fds_lock = threading.Lock()
#: The directory locks' descriptors open in this process.
directory_fds: set[int] = set()


def track(spool: _Locked) -> None:
    """Hold *spool*'s locks (``spool.fork_locks()``, in that order) across every fork."""
    _spools.add(spool)


def untrack(spool: _Locked) -> None:
    """*spool* is closed: a fork no longer waits for it."""
    _spools.discard(spool)


def holds(lock: Any) -> bool:
    """Whether the fork now under way holds *lock* (and gives it back after it):
    in a forked child, a lock it does not hold, yet held, was passed over."""
    return any(held is lock for held in _held)


def _before() -> None:
    for spool in list(_spools):
        for lock in spool.fork_locks():
            if lock.acquire(timeout=FORK_PATIENCE):
                _held.append(lock)
    fds_lock.acquire()


def _after_in_parent() -> None:
    fds_lock.release()
    _release()


def _after_in_child() -> None:
    for fd in directory_fds:
        try:
            os.close(fd)  # the parent's lock: not this process's to hold
        except OSError:
            pass
    directory_fds.clear()
    fds_lock.release()
    _release()


def _release() -> None:
    while _held:
        _held.pop().release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child
    )
