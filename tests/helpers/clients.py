"""The client factory behind the ``make_client`` fixture (tests/conftest.py)."""

from __future__ import annotations

from typing import Any, Optional

import meterstream


class ClientFactory:
    """``make_client(**settings)`` builds a ``MeterClient`` from ``client_settings``
    and *settings*; ``make_client(url, ...)`` also aims it at *url* (``api_base``
    and ``stream_base``). Every client made is in :attr:`clients`."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.clients: list[meterstream.MeterClient] = []

    def __call__(self, url: Optional[str] = None, /, **settings: Any) -> meterstream.MeterClient:
        options = dict(self.settings)
        if url is not None:
            options.update(api_base=url, stream_base=url)
        options.update(settings)
        client = meterstream.MeterClient(**options)
        self.clients.append(client)
        return client


#: The parallel-run tests' credentials, as the emulator takes any of them.
PARALLEL_KEY = "sk_test_parallel"
PARALLEL_TOKEN = "mt_parallel_token"


def parallel_settings(url: str, **settings: Any) -> dict[str, Any]:
    """Settings of a parallel run (Stripe and Metronome) against the emulator
    at *url*, plus *settings*."""
    return {
        "destinations": ["stripe", "metronome"],
        "api_key": PARALLEL_KEY,
        "api_base": url,
        "stream_base": url,
        "metronome_api_key": PARALLEL_TOKEN,
        "metronome_base": url,
        **settings,
    }
