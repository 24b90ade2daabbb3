"""Django: configuration from ``settings.METERSTREAM``, a customer per request.

Install with ``pip install 'meterstream[django]'``, then::

    INSTALLED_APPS = [..., "meterstream.integrations.django"]
    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "meterstream.integrations.django.MeterstreamMiddleware",
    ]
    METERSTREAM = {
        "api_key": env("STRIPE_API_KEY"),
        "customer_resolver": user_attribute("profile.stripe_customer_id"),
        "request_event": "api_requests",     # optional: one use per 2xx response
    }
    # urls.py: Stripe's error reports (set webhook_secret / STRIPE_WEBHOOK_SECRET)
    urlpatterns = [..., path("stripe/webhook", stripe_webhook)]

See ``docs/integrations/django.md``.
"""

# mypy: disable-error-code="import-untyped"

from __future__ import annotations

try:
    import django  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "meterstream.integrations.django needs Django: pip install 'meterstream[django]'"
    ) from exc

from meterstream.integrations.django._middleware import (
    MeterstreamMiddleware,
    header,
    user_attribute,
)
from meterstream.integrations.django._settings import (
    check_settings,
    configure_from_settings,
    options_from_settings,
)
from meterstream.integrations.django._webhook import stripe_webhook, stripe_webhook_view

__all__ = [
    "MeterstreamMiddleware",
    "check_settings",
    "configure_from_settings",
    "header",
    "options_from_settings",
    "stripe_webhook",
    "stripe_webhook_view",
    "user_attribute",
]
