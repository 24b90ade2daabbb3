"""Web framework integrations: set the customer for each request, meter requests.

Each integration lives in its own module and imports its framework only
there, so ``import meterstream`` never pulls a web framework in:

- :mod:`meterstream.integrations.django` (``pip install 'meterstream[django]'``)
- :mod:`meterstream.integrations.asgi` for FastAPI and Starlette
  (``pip install 'meterstream[fastapi]'``)
- :mod:`meterstream.integrations.flask` (``pip install 'meterstream[flask]'``)

Importing one without its framework raises an :class:`ImportError` whose
message is the command to run.
"""

from __future__ import annotations

__all__: list[str] = []
