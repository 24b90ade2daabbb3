"""Who the customer of a request is."""

from __future__ import annotations

from typing import Any, Optional

#: API key -> Stripe customer. A real app keeps this in its database (or uses
#: ``user_attribute("profile.stripe_customer_id")`` with logged-in users).
API_KEYS = {"key_alice": "cus_alice", "key_bob": "cus_bob"}


def customer_from_request(request: Any) -> Optional[str]:
    """The customer of a request: its API key's, else the gateway's header."""
    api_key = request.headers.get("X-Api-Key")
    if api_key is not None:
        return API_KEYS.get(api_key)
    # Trusted because this service only runs behind a gateway that
    # authenticates callers and sets (or strips) X-Customer-Id itself.
    return request.headers.get("X-Customer-Id")
