"""Where connections to Stripe go: proxies and CA certificates.

They are picked up the way requests, httpx and stripe-python pick them up:

* the ``proxy`` setting, else ``HTTPS_PROXY`` / ``HTTP_PROXY`` (by the
  scheme of the URL asked for) or ``ALL_PROXY``, upper or lower case, minus
  the hosts ``NO_PROXY`` names (host suffixes, ``*``, ``host:port``, IP
  addresses and networks). An explicit ``proxy`` wins over the environment,
  ``NO_PROXY`` included, as httpx's ``proxy=`` does;
* the ``ca_bundle`` setting, else ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` /
  ``REQUESTS_CA_BUNDLE`` (the first one set that exists), else certifi's
  roots.

The parsing is the standard library's (:mod:`urllib.request`'s environment
helpers, :mod:`ipaddress`, :mod:`ssl`'s CA loading) and httpx's
(:class:`httpx.Proxy`), not ours.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlsplit

from meterstream._config.network import proxy_url, redact_url
from meterstream.errors import ConfigurationError

__all__ = [
    "CaSource",
    "ProxyRoute",
    "ca_source",
    "proxy_for",
    "ssl_context",
]

_CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")


@dataclass(frozen=True)
class ProxyRoute:
    """The proxy one origin's requests go through.

    Attributes:
        url: the proxy URL, credentials included (never log it: see ``shown``).
        source: where it came from: ``proxy`` or the environment variable.
    """

    url: str
    source: str

    @property
    def shown(self) -> str:
        """The URL for messages: the password masked."""
        return redact_url(self.url)

    @property
    def is_tls(self) -> bool:
        """An ``https://`` proxy: TLS to the proxy itself."""
        return self.url.lower().startswith("https://")

    def for_lean(self) -> tuple[str, int, Optional[str]]:
        """(host, port, ``Proxy-Authorization`` value or None) of an http:// proxy."""
        import httpx

        proxy = httpx.Proxy(self.url)
        auth = None
        if proxy.raw_auth is not None:
            user, password = proxy.raw_auth
            auth = "Basic " + base64.b64encode(user + b":" + password).decode("ascii")
        return proxy.url.host, proxy.url.port or 80, auth

    def for_httpx(self, tls: ssl.SSLContext) -> Any:
        """An :class:`httpx.Proxy`; an https:// proxy is verified with *tls* too."""
        import httpx

        if self.is_tls:
            return httpx.Proxy(self.url, ssl_context=tls)
        return httpx.Proxy(self.url)


def proxy_for(
    target: str, explicit: Optional[str], environ: Optional[Mapping[str, str]] = None
) -> Optional[ProxyRoute]:
    """The proxy requests to *target* go through, or None to connect directly.

    Args:
        target: the URL asked for (its scheme and host decide).
        explicit: the ``proxy`` setting; when set it is used for everything.
        environ: the environment to read (default ``os.environ``).
    """
    if explicit:
        return ProxyRoute(explicit, "proxy")
    proxies = _environment_proxies(os.environ if environ is None else environ)
    parts = urlsplit(target)
    scheme = parts.scheme.lower()
    url = proxies.get(scheme) or proxies.get("all")
    if not url:
        return None
    source = f"{'ALL' if not proxies.get(scheme) else scheme.upper()}_PROXY"
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    if _bypassed(host, port, proxies.get("no", "")):
        return None
    return ProxyRoute(proxy_url(url, source), source)


def _environment_proxies(environ: Mapping[str, str]) -> dict[str, str]:
    """``{scheme: url, "no": hosts}`` from ``*_PROXY`` variables, as urllib reads them.

    urllib's own reader only takes ``os.environ``; this is the same rule (lower
    case wins, an empty value unsets, ``HTTP_PROXY`` is ignored under CGI, where
    a client's ``Proxy:`` header would set it) over any mapping.
    """
    if environ is os.environ:
        return dict(urllib.request.getproxies_environment())
    proxies: dict[str, str] = {}
    for name, value in environ.items():
        if value and name[-6:].lower() == "_proxy":
            proxies[name[:-6].lower()] = value
    if "REQUEST_METHOD" in environ:
        proxies.pop("http", None)
    for name, value in environ.items():
        if name[-6:] == "_proxy":
            if value:
                proxies[name[:-6].lower()] = value
            else:
                proxies.pop(name[:-6].lower(), None)
    return proxies


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` names *host*: suffixes, ``*`` and ``host:port`` as urllib
    reads them, plus IP networks (``10.0.0.0/8``) as requests reads them."""
    if not no_proxy.strip():
        return False
    # Not in typeshed, but in urllib since Python 2: the rule requests builds on.
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if bypass(f"{host}:{port}", {"no": no_proxy}):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    for entry in no_proxy.split(","):
        entry = entry.strip().strip("[]")
        if not entry:
            continue
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


@dataclass(frozen=True)
class CaSource:
    """Where the CA certificates come from: a path, and the setting that named it."""

    path: str
    source: str  # "ca_bundle", an environment variable, or "certifi"

    def describe(self) -> str:
        if self.source == "certifi":
            return f"certifi's CA bundle ({self.path}); set ca_bundle to use another"
        if self.source == "ca_bundle":
            return f"ca_bundle={self.path!r}"
        return f"ca_bundle unset, so {self.source}={self.path!r}"


def ca_source(explicit: Optional[str], environ: Optional[Mapping[str, str]] = None) -> CaSource:
    """The CA certificates to verify Stripe (or an https proxy) with."""
    if explicit:
        return CaSource(explicit, "ca_bundle")
    env = os.environ if environ is None else environ
    for name in _CA_VARIABLES:
        value = (env.get(name) or "").strip()
        # A variable naming nothing is passed over, as httpx does.
        if value and os.path.exists(value):
            return CaSource(value, name)
    import certifi

    return CaSource(certifi.where(), "certifi")


def ssl_context(source: CaSource) -> ssl.SSLContext:
    """A verifying client context trusting the CA certificates of *source*.

    Raises:
        ConfigurationError: they cannot be loaded; the message names the setting.
    """
    try:
        if os.path.isdir(source.path):
            return ssl.create_default_context(capath=source.path)
        return ssl.create_default_context(cafile=source.path)
    except (OSError, ssl.SSLError) as exc:
        where = "ca_bundle" if source.source in ("ca_bundle", "certifi") else source.source
        raise ConfigurationError(
            f"{where}: cannot load CA certificates from {source.path!r}: {exc}"
        ) from None
