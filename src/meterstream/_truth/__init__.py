"""Truth: Stripe's asynchronous error reports (the webhook, fetching and mapping them back
to events, one client taking them in) and reconciliation against what Stripe billed.
"""
