"""The Django view for Stripe's webhooks: ``path("stripe/webhook", stripe_webhook)``."""

# mypy: disable-error-code="import-untyped"

from __future__ import annotations

from typing import Any, Callable, Optional

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from meterstream._client.client import MeterClient
from meterstream.integrations._webhook import MAX_BODY_BYTES, answer_webhook

__all__ = ["stripe_webhook", "stripe_webhook_view"]


def stripe_webhook_view(
    *, client: Optional[MeterClient] = None, secret: Optional[str] = None
) -> Callable[[HttpRequest], HttpResponse]:
    """A view handling Stripe's error reports for *client* (default: the default client).

    CSRF-exempt (Stripe signs its requests instead); POST only.

    Args:
        client: the client whose reports these are; default the default client.
        secret: the endpoint's ``whsec_...`` secret; default the client's
            ``webhook_secret`` setting, else ``STRIPE_WEBHOOK_SECRET``.

    Returns:
        The Django view, for ``path("stripe/webhook", ...)``.
    """

    def view(request: HttpRequest) -> HttpResponse:
        """Answer one of Stripe's webhook POSTs (see :func:`meterstream.handle_webhook`).

        Args:
            request: the Django request.

        Returns:
            200 when handled or ignored, 400 for a bad signature or body, 405
            for another method, 5xx (Stripe retries) when the event could not
            be fetched.
        """
        if request.method != "POST":
            response = HttpResponse(status=405)
            response["Allow"] = "POST"
            return response
        length = request.META.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            status, body = 400, b'{"error": "body too large"}'
        else:
            status, body = answer_webhook(
                request.body, request.headers.get("Stripe-Signature"), client=client, secret=secret
            )
        return HttpResponse(body, status=status, content_type="application/json")

    exempt: Callable[[HttpRequest], HttpResponse] = csrf_exempt(view)
    return exempt


#: The view for the default client: ``path("stripe/webhook", stripe_webhook)``.
stripe_webhook: Any = stripe_webhook_view()
