"""The few Stripe v1 billing endpoints the CLI and reconciliation read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional
from urllib.parse import quote

import httpx

from meterstream._config.settings import DEFAULT_STRIPE_VERSION, Settings
from meterstream._exporters.network import ca_source, proxy_for, ssl_context
from meterstream._exporters.stripe._errors import error_fields
from meterstream._version import __version__
from meterstream.errors import ConfigurationError, DeliveryError

__all__ = ["StripeAPI"]


class StripeAPI:
    """A small synchronous client for meters and meter event summaries.

    Proxies and CA certificates as the exporter takes them: *proxy* and
    *ca_bundle* (the settings of those names), else the environment
    (``HTTPS_PROXY``/``NO_PROXY``, ``SSL_CERT_FILE``, ...), else certifi.
    """

    def __init__(
        self,
        api_key: str,
        api_base: str = "https://api.stripe.com",
        *,
        stripe_version: str = DEFAULT_STRIPE_VERSION,
        timeout: float = 10.0,
        proxy: Optional[str] = None,
        ca_bundle: Optional[str] = None,
    ) -> None:
        base = api_base.rstrip("/")
        tls = ssl_context(ca_source(ca_bundle))
        route = proxy_for(base, proxy)
        self._http = httpx.Client(
            base_url=base,
            proxy=None if route is None else route.for_httpx(tls),
            verify=tls,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Stripe-Version": stripe_version,
                "User-Agent": f"meterstream/{__version__}",
            },
            timeout=timeout,
            trust_env=False,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeAPI:
        """A client with a client's key, bases, version, proxy and CA bundle.

        Raises:
            ConfigurationError: the settings have no api_key.
        """
        if not settings.api_key:
            raise ConfigurationError("api_key: needed to read Stripe's API (or STRIPE_API_KEY)")
        return cls(
            settings.api_key,
            settings.api_base,
            stripe_version=settings.stripe_version,
            proxy=settings.proxy,
            ca_bundle=settings.ca_bundle,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StripeAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._http.get(path, params=params)
        except httpx.TransportError as exc:
            raise DeliveryError(f"GET {path} failed: {exc!r}", reason="unreachable") from None
        if response.status_code != 200:
            _, code, message = error_fields(response)
            raise DeliveryError(
                f"GET {path}: HTTP {response.status_code} {code or ''} {message}".strip(),
                reason="rejected",
                status=response.status_code,
                code=code,
            )
        body: dict[str, Any] = response.json()
        return body

    def _list(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        params = {**params, "limit": 100}
        while True:
            page = self._get(path, params)
            data = page.get("data") or []
            yield from data
            if not page.get("has_more") or not data:
                return
            params["starting_after"] = data[-1]["id"]

    def core_event(self, event_id: str) -> dict[str, Any]:
        """The full ``v2.core.event`` for a thin event's id (``GET /v2/core/events/{id}``)."""
        return self._get(f"/v2/core/events/{quote(event_id, safe='')}", {})

    def meters(self) -> list[dict[str, Any]]:
        return list(self._list("/v1/billing/meters", {}))

    def meter_for_event(self, event_name: str) -> Optional[dict[str, Any]]:
        """The active meter whose ``event_name`` is *event_name*, if any."""
        for meter in self.meters():
            if meter.get("event_name") == event_name and meter.get("status", "active") == "active":
                return meter
        return None

    def event_summaries(
        self,
        meter_id: str,
        customer: str,
        start_time: int,
        end_time: int,
        window: Optional[str] = None,
    ) -> list[dict[str, Any]]:
        """``billing.meter_event_summary`` objects, oldest first, across all pages."""
        params: dict[str, Any] = {
            "customer": customer,
            "start_time": start_time,
            "end_time": end_time,
        }
        if window:
            params["value_grouping_window"] = window
        return list(self._list(f"/v1/billing/meters/{meter_id}/event_summaries", params))
