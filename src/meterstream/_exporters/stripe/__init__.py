"""The Stripe exporter: Meter Event Streams v2, and the v1 endpoints the CLI reads.

* :mod:`._exporter`: :class:`StripeExporter`, which sends batches and sorts
  the answers;
* :mod:`._sessions`: the meter event session token, one refresh at a time;
* :mod:`._errors`: what an answer means (error bodies, retry verdicts);
* :mod:`._http11` and :mod:`._watchdog`: the lean HTTP/1.1 client, and the
  deadline kept over httpx when HTTP/2 or an ``https://`` proxy is used;
* :mod:`._api`: a small client of the v1 billing endpoints (meters, event
  summaries) for the CLI and reconciliation.
"""

from __future__ import annotations

from meterstream._exporters.stripe._api import StripeAPI
from meterstream._exporters.stripe._exporter import StripeExporter

__all__ = ["StripeAPI", "StripeExporter"]
