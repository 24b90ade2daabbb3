"""The ASGI endpoint for Stripe's webhooks (Starlette, FastAPI, any ASGI app).

Mount it as a route, one line::

    app.add_route("/stripe/webhook", StripeWebhook(), methods=["POST"])

It is a plain ASGI application, so Starlette and FastAPI call it with the
raw request; the body is read whole (at most ``MAX_BODY_BYTES``) and handed
to :func:`meterstream.handle_webhook` on a worker thread, since fetching a
thin event's full form is a blocking HTTP request.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import anyio.to_thread

from meterstream._client.client import MeterClient
from meterstream.integrations._webhook import MAX_BODY_BYTES, answer_webhook

__all__ = ["StripeWebhook"]

Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class StripeWebhook:
    """An ASGI app answering Stripe's webhook POSTs.

    Args:
        client: the client whose reports these are (default: the default client).
        secret: the ``whsec_...`` secret (default: the client's ``webhook_secret``,
            else ``STRIPE_WEBHOOK_SECRET``).
    """

    def __init__(
        self, *, client: Optional[MeterClient] = None, secret: Optional[str] = None
    ) -> None:
        self.client = client
        self.secret = secret

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            await _answer(send, 405, b'{"error": "POST only"}', [(b"allow", b"POST")])
            return
        signature: Optional[str] = None
        for name, value in scope["headers"]:
            if name == b"stripe-signature":
                signature = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
                await _answer(send, 400, b'{"error": "body too large"}')
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                await _answer(send, 400, b'{"error": "body too large"}')
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        status, answer = await anyio.to_thread.run_sync(
            lambda: answer_webhook(body, signature, client=self.client, secret=self.secret)
        )
        await _answer(send, status, answer)


async def _answer(
    send: Send, status: int, body: bytes, extra: Optional[list[tuple[bytes, bytes]]] = None
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
