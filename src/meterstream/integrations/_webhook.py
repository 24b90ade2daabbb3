"""What every framework's webhook endpoint answers: one function, three adapters.

A forged, stale, unsigned, oversized or malformed request is answered 400 and
changes nothing; a report is answered 200 once handled; a failure to fetch
the full event (Stripe unreachable) or a missing secret is answered 5xx, so
Stripe delivers the event again later rather than losing it.
"""

from __future__ import annotations

import json
import logging
from typing import Optional

from meterstream._api import handle_webhook
from meterstream._client.client import MeterClient
from meterstream._internal import RateLimitedLog, report_internal_error
from meterstream._truth.webhooks import MAX_BODY_BYTES
from meterstream.errors import ConfigurationError, DeliveryError, WebhookError

__all__ = ["MAX_BODY_BYTES", "answer_webhook"]

logger = logging.getLogger("meterstream.integrations")
# Anyone can POST to a webhook URL: invalid ones are logged at most once a minute.
_invalid = RateLimitedLog()


def answer_webhook(
    body: bytes,
    signature: Optional[str],
    *,
    client: Optional[MeterClient] = None,
    secret: Optional[str] = None,
) -> tuple[int, bytes]:
    """``(HTTP status, JSON body)`` for one webhook request; never raises."""
    try:
        report = handle_webhook(body, signature, secret=secret, client=client)
    except WebhookError as exc:
        _invalid.log(logging.WARNING, "webhook_invalid", "invalid webhook: %s", exc)
        return 400, _json({"error": str(exc)})
    except ConfigurationError as exc:
        logger.error("webhook not handled: %s", exc)
        return 500, _json({"error": "the webhook endpoint is not configured"})
    except DeliveryError as exc:
        logger.warning("webhook not handled yet (Stripe will retry): %s", exc)
        return 503, _json({"error": "could not fetch the event; retry later"})
    except Exception as exc:
        report_internal_error(exc)
        logger.exception("webhook handling failed")
        return 500, _json({"error": "internal error"})
    return 200, _json({"received": True, "handled": report is not None})


def _json(value: object) -> bytes:
    return json.dumps(value).encode()
