"""The one polling helper of the test suite."""

from __future__ import annotations

import threading
import time
from typing import Callable

#: Long enough for a loaded two-core machine; a right answer comes at once.
DEFAULT_TIMEOUT = 10.0


def wait_for(
    predicate: Callable[[], object],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.005,
) -> bool:
    """Poll *predicate* until it is true or *timeout* passes; its last answer.

    Waits on an Event between polls rather than sleeping, so the test
    thread gives the GIL to the threads it waits for.
    """
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        pause.wait(interval)
    return bool(predicate())
