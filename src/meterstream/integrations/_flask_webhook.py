"""The Flask view for Stripe's webhooks: one ``add_url_rule`` line."""

from __future__ import annotations

from typing import Callable, Optional

from flask import Response, request

from meterstream._client.client import MeterClient
from meterstream.integrations._webhook import MAX_BODY_BYTES, answer_webhook

__all__ = ["stripe_webhook", "stripe_webhook_view"]


def stripe_webhook_view(
    *, client: Optional[MeterClient] = None, secret: Optional[str] = None
) -> Callable[[], Response]:
    """A view handling Stripe's error reports for *client* (default: the default client).

    Mount it with ``app.add_url_rule("/stripe/webhook", view_func=stripe_webhook,
    methods=["POST"])``.

    Args:
        client: the client whose reports these are; default the default client.
        secret: the endpoint's ``whsec_...`` secret; default the client's
            ``webhook_secret`` setting, else ``STRIPE_WEBHOOK_SECRET``.

    Returns:
        The Flask view function.
    """

    def stripe_webhook() -> Response:
        """Answer one of Stripe's webhook POSTs (see :func:`meterstream.handle_webhook`).

        Returns:
            200 when handled or ignored, 400 for a bad signature or body, 5xx
            (Stripe retries) when the event could not be fetched.
        """
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            status, body = 400, b'{"error": "body too large"}'
        else:
            status, body = answer_webhook(
                request.get_data(cache=False),
                request.headers.get("Stripe-Signature"),
                client=client,
                secret=secret,
            )
        return Response(body, status=status, mimetype="application/json")

    return stripe_webhook


#: The view for the default client.
stripe_webhook = stripe_webhook_view()
