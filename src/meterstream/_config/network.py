"""The parsers of the network settings: ``proxy`` and ``ca_bundle``.

Where connections go once the settings are read (the environment's proxies,
``NO_PROXY``, the CA certificates) is :mod:`meterstream._exporters.network`.
"""

from __future__ import annotations

import os
from typing import Any, Optional
from urllib.parse import urlsplit, urlunsplit

from meterstream.errors import ConfigurationError

__all__ = ["parse_ca_bundle", "parse_proxy", "proxy_url", "redact_url"]

_PROXY_SCHEMES = ("http", "https")


def redact_url(url: str) -> str:
    """*url* without the password of its user info (``user:***@host``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None and parts.username is None:
        return url
    user = parts.username or ""
    netloc = parts.netloc.rpartition("@")[2]
    shown = f"{user}:***@{netloc}" if parts.password is not None else f"{user}@{netloc}"
    return urlunsplit(parts._replace(netloc=shown))


def proxy_url(raw: str, where: str) -> str:
    """*raw* as a proxy URL httpx takes (``http://`` added to a bare ``host:port``)."""
    value = raw.strip()
    if "://" not in value:
        value = "http://" + value  # what httpx and requests assume for "host:port"
    import httpx

    try:
        proxy = httpx.Proxy(value)
    except (ValueError, TypeError, httpx.InvalidURL) as exc:
        raise ConfigurationError(
            f"{where}: expected an http:// or https:// proxy URL, got {redact_url(raw)!r} ({exc})"
        ) from None
    if proxy.url.scheme not in _PROXY_SCHEMES or not proxy.url.host:
        raise ConfigurationError(
            f"{where}: expected an http:// or https:// proxy URL, got {redact_url(raw)!r}"
        )
    return value


def parse_proxy(raw: Any, where: str) -> Optional[str]:
    """The ``proxy`` setting: an http(s) proxy URL, optionally with ``user:password@``."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ConfigurationError(f"{where}: expected a proxy URL string, got {type(raw).__name__}")
    if not raw.strip():
        return None
    return proxy_url(raw, where)


def parse_ca_bundle(raw: Any, where: str) -> Optional[str]:
    """The ``ca_bundle`` setting: an existing PEM file or directory of CA certificates."""
    if raw is None:
        return None
    if isinstance(raw, os.PathLike):
        raw = os.fspath(raw)
    if not isinstance(raw, str):
        raise ConfigurationError(
            f"{where}: expected the path of a PEM file or directory, got {type(raw).__name__}"
        )
    path = raw.strip()
    if not path:
        return None
    if not os.path.exists(path):
        raise ConfigurationError(f"{where}: no such file or directory: {path!r}")
    return path
