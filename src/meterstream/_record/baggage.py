"""The customer in OpenTelemetry baggage: each client's key, and the default client's.

``customer()`` blocks write the customer under a client's ``otel_baggage_key``
for services downstream; lookups without a customer block read it. Each
client owns a :class:`Baggage`; the module-level ``customer()`` and
``current_customer()`` use the default client's (:data:`default_baggage`).
"""

from __future__ import annotations

import os
from typing import Optional

from opentelemetry import baggage
from opentelemetry import context as otel_context

from meterstream._config.parsing import parse_key_or_empty
from meterstream._config.settings import DEFAULT_BAGGAGE_KEY
from meterstream._otel import otel_failed, sdk_active
from meterstream.errors import ConfigurationError

__all__ = [
    "Baggage",
    "default_baggage",
    "detach",
    "refresh_before_default_client",
    "set_default_baggage",
]


class Baggage:
    """One client's baggage settings: the key its ``customer()`` writes and its lookups read.

    Each client owns one, so two clients with different ``otel_baggage_key``
    each use their own. The module-level ``customer()`` and
    ``current_customer()`` use the default client's (:data:`default_baggage`).
    """

    __slots__ = ("explicit", "key", "write")

    def __init__(self, key: str, *, explicit: bool) -> None:
        #: The baggage key; empty: baggage is not used.
        self.key = key
        #: The key was set on purpose (a keyword or the environment).
        self.explicit = explicit
        #: Whether customer() writes the baggage: attaching an OpenTelemetry
        #: context costs about 2 us per block, worth it only while something
        #: can propagate it (an SDK is installed, or the key was set on
        #: purpose). Reading is always on. Kept by :meth:`refresh`.
        self.write = False

    def refresh(self, sdk_is_active: bool) -> None:
        """Decide again whether to write (an SDK may be installed after the client)."""
        self.write = bool(self.key) and (sdk_is_active or self.explicit)

    def customer(self) -> Optional[str]:
        """The customer a calling service put in W3C baggage under this key, if any.

        Baggage arrives in request headers: trust it only from your own services.
        """
        key = self.key
        if not key:
            return None
        try:
            value = baggage.get_baggage(key)
        except Exception as exc:
            otel_failed(exc)
            return None
        return value if isinstance(value, str) and value else None

    def attach(self, customer_id: Optional[str]) -> Optional[object]:
        """Put *customer_id* in the current baggage (None removes it); a token to detach."""
        key = self.key
        if not key or not self.write:
            return None
        try:
            ctx = (
                baggage.remove_baggage(key)
                if customer_id is None
                else baggage.set_baggage(key, customer_id)
            )
            return otel_context.attach(ctx)
        except Exception as exc:
            otel_failed(exc)
            return None

    def __repr__(self) -> str:
        return f"Baggage(key={self.key!r}, write={self.write})"


class _BeforeDefaultClient(Baggage):
    """The default client's baggage before there is a default client, as the
    default client will have it once built from the environment: the key from
    ``METERSTREAM_OTEL_BAGGAGE_KEY`` or the default one, written while an SDK
    is active or when that variable is set.

    Settings are read once: the environment here the first time a
    ``customer()`` block or a lookup needs it, never on each entry (three
    reads cost 5 us a block). Changing the variable afterwards takes a
    ``configure()`` (or ``reset_default_client()``), as for any setting.
    """

    __slots__ = ("_resolved",)

    def __init__(self) -> None:
        super().__init__(DEFAULT_BAGGAGE_KEY, explicit=False)
        self._resolved = False
        # Not read yet: "maybe", so that the first block calls attach(),
        # which reads the environment and writes, or not.
        self.write = True

    def _resolve(self) -> None:
        raw = os.environ.get(_BAGGAGE_KEY_ENV)
        key = DEFAULT_BAGGAGE_KEY
        if raw is not None:
            try:
                key = parse_key_or_empty(raw, _BAGGAGE_KEY_ENV)
            except ConfigurationError:  # configure() will say so; customer() never raises
                pass
        self.key = key
        self.explicit = raw is not None
        Baggage.refresh(self, sdk_active())
        self._resolved = True

    def refresh(self, sdk_is_active: bool) -> None:
        if self._resolved:
            Baggage.refresh(self, sdk_is_active)

    def customer(self) -> Optional[str]:
        if not self._resolved:
            self._resolve()
        return Baggage.customer(self)

    def attach(self, customer_id: Optional[str]) -> Optional[object]:
        if not self._resolved:
            self._resolve()
        return Baggage.attach(self, customer_id)


_BAGGAGE_KEY_ENV = "METERSTREAM_OTEL_BAGGAGE_KEY"

#: The default client's baggage settings: what the module-level ``customer()``
#: writes and ``current_customer()`` reads. A variable, not a function: a
#: customer block reads it on every entry. Set by :func:`set_default_baggage`.
default_baggage: Baggage = _BeforeDefaultClient()


def set_default_baggage(settings: Optional[Baggage]) -> None:
    """Called by whoever installs the default client (None: there is none, and
    the environment is read again the next time it is needed)."""
    global default_baggage
    default_baggage = _BeforeDefaultClient() if settings is None else settings


def refresh_before_default_client(sdk_is_active: bool) -> None:
    """Decide again whether the module-level ``customer()`` writes baggage, while
    there is no default client (an SDK may be installed after the first block);
    each client's delivery wake calls it, as it refreshes its own."""
    baggage = default_baggage
    if type(baggage) is _BeforeDefaultClient:
        baggage.refresh(sdk_is_active)


def detach(token: Optional[object]) -> None:
    """Undo what :meth:`Baggage.attach` did (a None token: nothing)."""
    if token is not None:
        try:
            otel_context.detach(token)  # type: ignore[arg-type]
        except Exception as exc:
            otel_failed(exc)
