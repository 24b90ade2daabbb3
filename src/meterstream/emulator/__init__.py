"""A local Stripe stand-in for meter event streams, sessions, meters and summaries.

``EmulatorState``, ``FaultConfig`` and ``create_app`` need only the standard
library; ``Emulator`` (the server) needs ``pip install 'meterstream[emulator]'``
and is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meterstream.emulator._app import create_app
from meterstream.emulator._faults import FaultConfig
from meterstream.emulator._state import EmulatorState, Total

if TYPE_CHECKING:
    from meterstream.emulator._process import SpawnedEmulator
    from meterstream.emulator._server import Emulator

__all__ = ["Emulator", "EmulatorState", "FaultConfig", "SpawnedEmulator", "Total", "create_app"]


def __getattr__(name: str) -> Any:
    # The server needs uvicorn; import it only when asked for.
    if name == "Emulator":
        from meterstream.emulator._server import Emulator

        return Emulator
    if name == "SpawnedEmulator":
        from meterstream.emulator._process import SpawnedEmulator

        return SpawnedEmulator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
