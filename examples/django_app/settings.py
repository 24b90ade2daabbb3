"""Settings of the example: no database, just an API billed through meterstream."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-example-key-do-not-deploy")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["meterstream.integrations.django"]
MIDDLEWARE = ["meterstream.integrations.django.MeterstreamMiddleware"]
ROOT_URLCONF = "examples.django_app.urls"
WSGI_APPLICATION = "examples.django_app.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

# The core settings (api_key, api_base, stream_base, ...) come from the
# METERSTREAM_* environment variables; a value given here wins over them.
# `python manage.py check` reports a wrong key or value (meterstream.E001).
METERSTREAM = {
    "flush_interval": 0.5,
    "customer_resolver": "examples.django_app.customers.customer_from_request",
    "request_event": "api_requests",  # one use per 2xx response
}
