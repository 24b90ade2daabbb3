"""Meter event sessions: the tokens the stream accepts, and until when.

Guarded by the emulator state's lock for changes; checking a token reads one
dict entry and needs no lock.
"""

from __future__ import annotations

import secrets

__all__ = ["Sessions"]

#: Tokens kept before the expired ones are dropped.
_PRUNE_ABOVE = 1000


class Sessions:
    """Session tokens and when each expires; how many were opened."""

    __slots__ = ("_expiry", "created")

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        #: Sessions opened since the start (or the last reset of the count).
        self.created = 0

    def open(self, now: float, ttl: float) -> tuple[str, float]:
        """A new token valid for *ttl* seconds from *now*, and when it expires."""
        token = "mets_" + secrets.token_urlsafe(24)
        if len(self._expiry) > _PRUNE_ABOVE:
            self._expiry = {t: e for t, e in self._expiry.items() if e > now}
        expires = now + ttl
        self._expiry[token] = expires
        self.created += 1
        return token, expires

    def valid(self, token: str, now: float) -> bool:
        """Whether *token* was opened here and has not expired at *now*."""
        expires = self._expiry.get(token)
        return expires is not None and now < expires

    def active(self, now: float) -> int:
        """Tokens not yet expired at *now*."""
        return sum(1 for e in self._expiry.values() if e > now)
