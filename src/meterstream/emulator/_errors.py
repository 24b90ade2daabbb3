"""Stripe-shaped errors raised by the emulator's state and rendered by the app."""

from __future__ import annotations

import json
from typing import Optional

__all__ = ["StripeError", "bad_request", "v1_error_body", "v2_error_body"]


class StripeError(Exception):
    """An error answered to the client in Stripe's shape.

    Args:
        status: HTTP status code.
        type: Stripe's error ``type`` (``invalid_request_error``, ``api_error``...).
        message: human-readable message; for body validation it starts with the
            field path, e.g. ``events[3].payload.value: must be a string``.
        code: Stripe's error ``code``; v2 bodies always carry one.
        param: the offending parameter, when there is one.
    """

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        *,
        code: Optional[str] = None,
        param: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.code = code
        self.param = param

    def v1_body(self) -> bytes:
        return v1_error_body(self.type, self.message, code=self.code, param=self.param)

    def v2_body(self) -> bytes:
        return v2_error_body(self.type, self.code or self.type, self.message, param=self.param)


def v1_error_body(
    type: str, message: str, *, code: Optional[str] = None, param: Optional[str] = None
) -> bytes:
    """``{"error": {"type", "message", ["code"], ["param"]}}`` as Stripe's v1 API answers."""
    error: dict[str, str] = {"type": type, "message": message}
    if code is not None:
        error["code"] = code
    if param is not None:
        error["param"] = param
    return json.dumps({"error": error}).encode()


def v2_error_body(type: str, code: str, message: str, *, param: Optional[str] = None) -> bytes:
    """``{"error": {"type", "code", "message"}}`` as Stripe's v2 API answers."""
    error: dict[str, str] = {"type": type, "code": code, "message": message}
    if param is not None:
        error["param"] = param
    return json.dumps({"error": error}).encode()


def bad_request(
    message: str, *, code: str = "parameter_invalid", param: Optional[str] = None
) -> StripeError:
    """A 400 ``invalid_request_error``."""
    return StripeError(400, "invalid_request_error", message, code=code, param=param)
