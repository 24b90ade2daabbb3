"""HTTP plumbing for the ASGI app: ASGI types, bodies, forms, credentials."""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from collections.abc import Awaitable, MutableMapping
from typing import Any, Callable, Optional

from meterstream.emulator._errors import bad_request

__all__ = [
    "NO_KEY",
    "Answer",
    "Disconnected",
    "Headers",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "credential",
    "form",
    "json_body",
    "masked",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, bytes, Headers]

NO_KEY = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
)


class Disconnected(Exception):
    pass


def json_body(body: bytes) -> object:
    if not body:
        raise bad_request("body: is empty, expected a JSON object", code="parameter_missing")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        # UnicodeDecodeError is a ValueError: bodies that are not UTF-8 land here.
        reason = str(exc).split("\n")[0][:120]
        raise bad_request(f"body: not valid JSON ({reason})", code="invalid_json") from None


def form(text: bytes) -> dict[str, str]:
    try:
        return dict(
            urllib.parse.parse_qsl(
                text.decode("utf-8"), keep_blank_values=True, max_num_fields=1000
            )
        )
    except ValueError as exc:
        raise bad_request(f"Invalid request parameters: {str(exc)[:120]}") from None


def credential(scope: Scope) -> Optional[str]:
    """The bearer token (or HTTP Basic user name, as Stripe allows); None when absent."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            text: str = value.decode("latin-1").strip()
            scheme, _, rest = text.partition(" ")
            if scheme.lower() == "bearer":
                return rest.strip()
            if scheme.lower() == "basic":
                try:
                    decoded = base64.b64decode(rest.strip()).decode("latin-1")
                    return decoded.partition(":")[0]
                except (binascii.Error, ValueError):
                    return ""
            return ""
    return None


def masked(key: str) -> str:
    if len(key) <= 12:
        return "*" * len(key)
    return key[:8] + "*" * (len(key) - 12) + key[-4:]
