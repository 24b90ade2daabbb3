"""The process-wide default client behind the module-level functions."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Optional

from meterstream._client.client import MeterClient

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from meterstream._config.keywords import SettingKeywords
from meterstream._record import baggage as _baggage

__all__ = ["configure", "get_client", "reset_default_client"]

_lock = threading.Lock()
_client: Optional[MeterClient] = None


def get_client() -> MeterClient:
    """The default client, created on first use from the environment.

    Returns:
        The client the module functions (``meterstream.record``, ...) use:
        the one :func:`configure` made last, else one built from the
        environment on first use.
    """
    client = _client
    if client is not None:
        return client
    return _create_default()


def _create_default() -> MeterClient:
    global _client
    with _lock:
        if _client is None:
            _client = MeterClient()
            _baggage.set_default_baggage(_client._baggage)
        return _client


def configure(**settings: Unpack[SettingKeywords]) -> MeterClient:
    """Configure the default client used by the module-level functions.

    Replaces the default client: the previous one is flushed and shut down
    (within its ``shutdown_timeout``), so nothing it had accepted is lost.
    Decorators applied before ``configure()`` use the new client.

    Args:
        **settings: the settings of the configuration reference; each also
            reads ``METERSTREAM_<NAME>`` from the environment.

    Returns:
        The new default client.

    Raises:
        ConfigurationError: an unknown setting or a bad value (the previous
            client stays in place).
    """
    global _client
    new = MeterClient(**settings)
    with _lock:
        old, _client = _client, new
        # The module-level customer() writes the default client's baggage key.
        _baggage.set_default_baggage(new._baggage)
    if old is not None:
        old.shutdown()
    return new


def reset_default_client() -> None:
    """Shut the default client down and forget it (tests use this between cases)."""
    global _client
    with _lock:
        old, _client = _client, None
        _baggage.set_default_baggage(None)
    if old is not None:
        old.shutdown(0)
