"""The ``meterstream`` command: one module per command group.

``meterstream.cli:main`` is the console script; :mod:`meterstream.cli._main` parses
the command line and dispatches to the groups (``_stripe``, ``_spool``, ``_relay``,
``_demo``, and the emulator's own CLI).
"""

from __future__ import annotations

from meterstream.cli._main import main

__all__ = ["main"]
