"""The pace of delivery: how long failed batches wait, and when every sender holds back.

The server's health is one fact shared by every batch, so it is kept in one
place. A batch that failed waits in the delivery's retry queue, not on a
thread; how long it waits follows the streak of failed requests across all
batches (reset by any success). While the server answers most requests, a
failure is retried quickly. While it fails broadly (a streak of
``2 x senders`` failed requests in a row, or a ``Retry-After``), the gate
lets one request through at a time, spaced with exponential backoff and full
jitter up to :data:`PROBE_MAX_DELAY`: a probe; the first success opens it
for everyone, and batches waiting to retry go at once. Probes stay close
together however long the outage: each costs one request, and an outage's
end is found within a couple of seconds even while a share of requests keeps
failing (a probe that meets one of those only means another probe soon,
where doubling its spacing up to ``retry_max_delay`` kept delivery stopped
for tens of seconds after the server came back: issue 24). A batch that
keeps failing alone on a healthy server backs off by its own attempts too:
its ceiling doubles from the sixth (``retry_initial_delay`` at the eighth).

Random failures (30% of requests failing) rarely make such a streak, so they
cost only the failed requests; an outage costs a probe a second or so.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Callable, Optional

__all__ = ["MAX_RETRY_AFTER", "PROBE_MAX_DELAY", "Backoff", "Pacer"]

#: The longest Retry-After honoured before retrying anyway.
MAX_RETRY_AFTER = 60.0
#: The longest ceiling of the spacing of probes while the server fails broadly
#: (retry_max_delay when that is shorter): one request every second on
#: average, whatever the outage's length.
PROBE_MAX_DELAY = 2.0
#: The attempt of one batch from which its own waits reach retry_initial_delay
#: (they double from QUICK_ATTEMPTS + QUICK_LEVEL + 1 on).
QUICK_ATTEMPTS = 8
#: A quick retry waits up to retry_initial_delay * 2**QUICK_LEVEL.
QUICK_LEVEL = -3


#: Jitter from the OS, not the random module: the application's random state
#: is its own (a seeded simulation, a property test's), never drawn from by a
#: delivery thread.
_jitter = random.SystemRandom().random


class Backoff:
    """Exponential backoff with full jitter: ``uniform(0, min(cap, base * 2**n))``."""

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 20.0,
        rng: Callable[[], float] = random.SystemRandom().random,
    ) -> None:
        self.base = base
        self.cap = cap
        self._rng = rng

    def delay(self, attempt: int, cap: Optional[float] = None) -> float:
        """The wait before retry *attempt*: jittered, under *cap* when given (else :attr:`cap`)."""
        top = self.cap if cap is None else min(self.cap, cap)
        ceiling = min(top, self.base * 2.0 ** min(attempt, 30))
        return float(ceiling * self._rng())


class Pacer:
    """The shared pace of requests, set by the server's recent answers.

    Args:
        backoff: the delays, from ``retry_initial_delay`` to ``retry_max_delay``.
        broad: failed requests in a row (across all batches) after which the
            server is taken to be failing broadly, and the gate closes.
        clock: monotonic seconds.
    """

    def __init__(
        self, backoff: Backoff, broad: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._backoff = backoff
        self._broad = max(1, broad)
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        #: Requests failed in a row, any batch; 0 after any success.
        self.streak = 0
        #: No request starts before this (monotonic); 0.0: the gate is open.
        self._open_at = 0.0
        self._draining = False

    def succeeded(self) -> bool:
        """A request was accepted: the server is healthy, open the gate.

        True when this ended a broad failure: batches waiting to retry were
        timed for a failing server and may go now.
        """
        if not (self.streak or self._open_at):  # the common case takes no lock
            return False
        with self._cond:
            was_broad = self.streak >= self._broad
            self.streak = 0
            self._open_at = 0.0
            self._cond.notify_all()
        return was_broad

    def failed(self, retry_after: Optional[float] = None) -> None:
        """A request failed in a way worth retrying (5xx, 429, timeout, ...)."""
        with self._cond:
            self.streak += 1
            now = self._clock()
            if retry_after is not None and retry_after > 0:
                self._open_at = max(self._open_at, now + min(retry_after, MAX_RETRY_AFTER))
            elif self.streak >= self._broad:
                self._open_at = max(self._open_at, now + self._probe_delay())

    def retry_delay(self, attempt: int) -> float:
        """How long a batch that failed its *attempt*-th try waits before the next.

        While the server answers most requests, a failure is retried within
        a fraction of ``retry_initial_delay`` (an eighth, jittered): the
        gate, not each batch, holds back once failures are broad, and then
        the waits grow with the streak up to ``retry_max_delay``. A batch
        that keeps failing alone on a healthy server backs off too: its
        ceiling doubles from its sixth attempt, to ``retry_initial_delay``
        at the eighth (30% random failures make five failures in a row in
        0.24% of batches), and on to ``retry_max_delay``.
        """
        level = attempt - QUICK_ATTEMPTS
        if self.streak >= self._broad:
            level = max(level, self.streak - self._broad + 1)
        return self._backoff.delay(max(level, QUICK_LEVEL))

    def _probe_delay(self) -> float:
        return self._backoff.delay(self.streak - self._broad + 1, PROBE_MAX_DELAY)

    @property
    def closed(self) -> bool:
        return bool(self._open_at) and not self._draining

    def wait_turn(self, stop: threading.Event) -> bool:
        """Wait until a request may start; False when *stop* was set first."""
        if not self._open_at:
            return not stop.is_set()
        with self._cond:
            while True:
                if stop.is_set():
                    return False
                if self._draining:
                    return True
                now = self._clock()
                if now >= self._open_at:
                    # One probe at a time while the server fails broadly.
                    self._open_at = now + self._probe_delay() if self.streak >= self._broad else 0.0
                    return True
                self._cond.wait(self._open_at - now)

    def drain(self) -> None:
        """Shutdown: no more holding back, every waiting sender goes at once."""
        with self._cond:
            self._draining = True
            self._cond.notify_all()

    def wake(self) -> None:
        """Wake every waiting sender (to see a stop)."""
        with self._cond:
            self._cond.notify_all()
