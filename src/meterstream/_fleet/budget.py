"""Stripe's per-account request budget, kept together by every relay.

One JetStream key-value bucket holds a counter per wall-clock second. A
relay takes request slots from the current second's counter with a
compare-and-set on the key's revision (so two relays never both take the
last slot) and uses them within that second; when the second is spent, it
waits for the next. Relays lease a few slots at a time
(``max_rps // 100``, at least one) so the counter is not a hot spot at
thousands of requests a second. Slots a relay leased and did not use die
with their second: the budget errs on the side of fewer requests.

The seconds are the relays' wall clocks: keep them in sync (NTP). A relay
whose clock runs ahead spends the next second's budget early, which can
put up to twice the budget into one real second at the boundary.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

__all__ = ["SharedBudget"]

#: Old counters are dropped by the bucket after this many seconds.
COUNTER_TTL = 60.0


class SharedBudget:
    """At most *max_rps* requests in any wall-clock second, across every relay.

    Args:
        js: a JetStream context.
        bucket: the key-value bucket's name (created when missing).
        max_rps: the requests per second all relays together may make.
    """

    def __init__(
        self, js: Any, bucket: str, max_rps: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._js = js
        self._bucket = bucket
        self.max_rps = max_rps
        self._clock = clock
        self._lease = max(1, max_rps // 100)
        self._kv: Any = None
        self._second = -1
        self._slots = 0
        self._lock = asyncio.Lock()
        #: Times a relay had to wait for the next second.
        self.waits = 0

    async def setup(self) -> None:
        import nats.js.errors

        try:
            self._kv = await self._js.key_value(self._bucket)
        except nats.js.errors.BucketNotFoundError:
            try:
                self._kv = await self._js.create_key_value(
                    bucket=self._bucket, history=1, ttl=COUNTER_TTL
                )
            except nats.js.errors.BadRequestError:  # created by another relay meanwhile
                self._kv = await self._js.key_value(self._bucket)

    async def acquire(self) -> None:
        """Wait until one more request fits in the shared budget."""
        async with self._lock:  # one lease at a time per relay
            while True:
                now = self._clock()
                second = int(now)
                if self._slots and self._second == second:
                    self._slots -= 1
                    return
                taken = await self._lease_from(second)
                if taken:
                    self._second, self._slots = second, taken - 1
                    return
                self.waits += 1
                await asyncio.sleep(max(0.001, second + 1 - self._clock()))

    async def _lease_from(self, second: int) -> int:
        """Slots taken from *second*'s counter: 0 when it is spent."""
        import nats.js.errors

        key = f"s{second}"
        while int(self._clock()) == second:
            try:
                entry = await self._kv.get(key)
                used, revision = int(entry.value or b"0"), entry.revision
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                used, revision = 0, 0
            if used >= self.max_rps:
                return 0
            take = min(self._lease, self.max_rps - used)
            try:
                if revision:
                    await self._kv.update(key, str(used + take).encode(), last=revision)
                else:
                    await self._kv.create(key, str(take).encode())
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # another relay took slots meanwhile: read again
            return take
        return 0
