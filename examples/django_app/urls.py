from __future__ import annotations

from django.urls import path

from meterstream.integrations.django import stripe_webhook

from . import views

urlpatterns = [
    path("search", views.search),
    path("complete", views.complete),
    # Stripe's asynchronous error reports (secret: METERSTREAM_WEBHOOK_SECRET
    # or STRIPE_WEBHOOK_SECRET); see docs/reconciliation.md.
    path("stripe/webhook", stripe_webhook),
]
