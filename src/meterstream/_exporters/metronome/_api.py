"""The few Metronome endpoints the CLI and reconciliation read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Optional

import httpx

from meterstream._exporters.metronome._errors import error_message
from meterstream._exporters.network import ca_source, proxy_for, ssl_context
from meterstream._version import __version__
from meterstream.errors import ConfigurationError, DeliveryError

if TYPE_CHECKING:
    from meterstream._config.settings import Settings

__all__ = ["MetronomeAPI"]


class MetronomeAPI:
    """A small synchronous client: billable metrics, customers, usage.

    Proxies and CA certificates as the exporter takes them.
    """

    def __init__(
        self,
        token: str,
        base: str = "https://api.metronome.com",
        *,
        timeout: float = 10.0,
        proxy: Optional[str] = None,
        ca_bundle: Optional[str] = None,
    ) -> None:
        base = base.rstrip("/")
        tls = ssl_context(ca_source(ca_bundle))
        route = proxy_for(base, proxy)
        self._token = token
        self._http = httpx.Client(
            base_url=base,
            proxy=None if route is None else route.for_httpx(tls),
            verify=tls,
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"meterstream/{__version__}",
            },
            timeout=timeout,
            trust_env=False,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> MetronomeAPI:
        """A client with a client's token, base, proxy and CA bundle.

        Raises:
            ConfigurationError: the settings have no metronome_api_key.
        """
        if not settings.metronome_api_key:
            raise ConfigurationError(
                "metronome_api_key: needed to read Metronome's API (or METRONOME_BEARER_TOKEN)"
            )
        return cls(
            settings.metronome_api_key,
            settings.metronome_base,
            proxy=settings.proxy,
            ca_bundle=settings.ca_bundle,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MetronomeAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self, method: str, path: str, *, json: Any = None, params: Optional[dict[str, Any]] = None
    ) -> Any:
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            raise DeliveryError(f"{method} {path} failed: {exc!r}", reason="unreachable") from None
        if response.status_code != 200:
            message = error_message(response.content, self._token)
            raise DeliveryError(
                f"{method} {path}: HTTP {response.status_code} {message}".strip(),
                reason="rejected",
                status=response.status_code,
            )
        return response.json()

    def _pages(
        self, method: str, path: str, *, json: Any = None, params: Optional[dict[str, Any]] = None
    ) -> Iterator[dict[str, Any]]:
        query = dict(params or {})
        while True:
            page = self._call(method, path, json=json, params=query)
            yield from page.get("data") or []
            cursor = page.get("next_page")
            if not cursor:
                return
            query["next_page"] = cursor

    def billable_metrics(self) -> list[dict[str, Any]]:
        """The active billable metrics."""
        return list(self._pages("GET", "/v1/billable-metrics"))

    def customers(self) -> list[dict[str, Any]]:
        """Every customer, with its ``ingest_aliases``."""
        return list(self._pages("GET", "/v1/customers"))

    def usage(
        self,
        starting_on: str,
        ending_before: str,
        window_size: str,
        *,
        customer_ids: Optional[list[str]] = None,
        billable_metric_ids: Optional[list[str]] = None,
    ) -> list[dict[str, Any]]:
        """``POST /v1/usage`` aggregates across all pages (RFC 3339 bounds, UTC midnights)."""
        body: dict[str, Any] = {
            "starting_on": starting_on,
            "ending_before": ending_before,
            "window_size": window_size,
        }
        if customer_ids:
            body["customer_ids"] = customer_ids
        if billable_metric_ids:
            body["billable_metrics"] = [{"id": i} for i in billable_metric_ids]
        return list(self._pages("POST", "/v1/usage", json=body))

    def search(self, transaction_ids: list[str]) -> list[dict[str, Any]]:
        """``POST /v1/events/search``: the events with these transaction ids."""
        found: list[dict[str, Any]] = self._call(
            "POST", "/v1/events/search", json={"transactionIds": transaction_ids}
        )
        return found
