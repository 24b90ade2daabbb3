"""Noticing a fork from the record path, cheaply.

``os.register_at_fork`` covers ``os.fork()``; servers that fork from C without
telling the interpreter skip those hooks, so the record path must also notice
a fork by itself. Comparing ``os.getpid()`` on every record does, but it is a
system call (a quarter of a microsecond in a virtual machine). Instead, each
client keeps one byte in a private page marked ``MADV_WIPEONFORK``: the kernel
zeroes it in a forked child, so one memory read tells. Where the kernel cannot
do that (not Linux, or before 4.14), the canary compares pids instead.
"""

from __future__ import annotations

import mmap
import os
import sys
from typing import Union

__all__ = ["Canary", "new_canary"]

_MADV_WIPEONFORK = getattr(
    mmap, "MADV_WIPEONFORK", 18 if sys.platform.startswith("linux") else None
)


class PidCanary:
    """The fallback: reads 1 in the process that armed it, 0 in any other."""

    __slots__ = ("_pid",)

    def __init__(self) -> None:
        self._pid = os.getpid()

    def __getitem__(self, index: int) -> int:
        return 1 if os.getpid() == self._pid else 0

    def __setitem__(self, index: int, value: int) -> None:
        self._pid = os.getpid()


Canary = Union[mmap.mmap, PidCanary]


def new_canary() -> Canary:
    """An armed canary: ``canary[0]`` is 1 until this process forks.

    Re-arm it with ``canary[0] = 1``.
    """
    if _MADV_WIPEONFORK is not None and hasattr(mmap.mmap, "madvise"):
        try:
            page = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            page.madvise(_MADV_WIPEONFORK)
        except (OSError, ValueError, AttributeError):
            pass
        else:
            page[0] = 1
            return page
    return PidCanary()
