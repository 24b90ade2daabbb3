"""Internal plumbing: rate-limited logging and the never-break-the-host boundary."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

logger = logging.getLogger("meterstream")

#: Tests set this to turn swallowed internal errors back into failures
#: (in the manner of sentry-python's ``capture_internal_exceptions``).
internal_error_hook: Optional[Callable[[BaseException], None]] = None


class RateLimitedLog:
    """Logs each *reason* at most once per ``interval`` seconds.

    Metering can fail once per event; logging once per event would flood the
    host's logs and slow its hot path, so repeats are counted and summarised
    in the next line that is let through.
    """

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, reason: str, msg: str, *args: object) -> bool:
        now = self._clock()
        with self._lock:
            last = self._last.get(reason)
            if last is not None and now - last < self._interval:
                self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
                return False
            self._last[reason] = now
            suppressed = self._suppressed.pop(reason, 0)
        if suppressed:
            msg += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        logger.log(level, msg, *args)
        return True

    def reset(self) -> None:
        with self._lock:
            self._last.clear()
            self._suppressed.clear()


def report_internal_error(exc: BaseException) -> None:
    """Hand an error swallowed at the library boundary to the test hook, if any."""
    hook = internal_error_hook
    if hook is not None:
        hook(exc)
