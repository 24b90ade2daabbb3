"""The parsers of the NATS settings: server URLs, the stream's name, credential files.

Connecting, and the stream itself, are :mod:`meterstream._fleet.nats`'s; these
are here so that the settings table reads them without the ``nats`` extra.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import Any, Optional

from meterstream.errors import ConfigurationError, short_repr

__all__ = ["parse_file", "parse_nats_stream", "parse_nats_urls", "redact_nats_urls"]

_SCHEMES = ("nats", "tls", "ws", "wss")
_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")


def parse_nats_urls(raw: Any, where: str) -> Optional[str]:
    """One or more server URLs, comma-separated: ``nats://h1:4222,nats://h2:4222``."""
    if raw is None:
        return None
    if isinstance(raw, (list, tuple)):
        raw = ",".join(str(part) for part in raw)
    if not isinstance(raw, str):
        raise ConfigurationError(f"{where}: expected a nats:// URL, got {type(raw).__name__}")
    urls = [part.strip() for part in raw.split(",") if part.strip()]
    if not urls:
        return None
    for url in urls:
        problem = _url_problem(url)
        if problem:
            raise ConfigurationError(f"{where}: {problem}, got {redact_nats_urls(url)!r}")
    return ",".join(urls)


def _url_problem(url: str) -> Optional[str]:
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        return "a URL cannot contain spaces or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return "not a valid URL (the port must be a number in 1..65535)"
    if parts.scheme.lower() not in _SCHEMES:
        return f"expected a URL starting with one of {', '.join(s + '://' for s in _SCHEMES)}"
    if not parts.hostname:
        return "the URL has no host"
    if port == 0:
        return "the port must be a number in 1..65535"
    return None


def redact_nats_urls(urls: str) -> str:
    """*urls* without secrets: ``user:***@host``, and a token (``TOKEN@host``) as ``***@host``."""
    shown = []
    for url in urls.split(","):
        try:
            parts = urllib.parse.urlsplit(url)
            secret = parts.password is not None or parts.username is not None
        except ValueError:
            shown.append("<unparsable URL>")
            continue
        if not secret:
            shown.append(url)
            continue
        host = parts.netloc.rpartition("@")[2]
        user = f"{parts.username}:***" if parts.password is not None else "***"
        shown.append(urllib.parse.urlunsplit(parts._replace(netloc=f"{user}@{host}")))
    return ",".join(shown)


def parse_nats_stream(raw: Any, where: str) -> str:
    """A JetStream stream name: letters, digits, ``_`` and ``-``, up to 32."""
    if not isinstance(raw, str) or not _STREAM_NAME.match(raw.strip()):
        raise ConfigurationError(
            f"{where}: a stream name is 1..32 letters, digits, '_' or '-', got {short_repr(raw)}"
        )
    return raw.strip()


def parse_file(raw: Any, where: str) -> Optional[str]:
    """A file that must exist (credentials, certificates)."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, (str, os.PathLike)):
        raise ConfigurationError(f"{where}: expected a file path, got {type(raw).__name__}")
    path = os.fspath(raw)
    if not os.path.isfile(path):
        raise ConfigurationError(f"{where}: no such file: {path!r}")
    return str(path)
