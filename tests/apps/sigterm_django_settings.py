"""Django settings for the SIGTERM measurements: runserver serving tests/apps/sigterm_app.py."""

from __future__ import annotations

import os

SECRET_KEY = "sigterm-measurements"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
ROOT_URLCONF = __name__
urlpatterns: list[object] = []
WSGI_APPLICATION = "tests.apps.sigterm_app.app"

if os.environ.get("SIGTERM_DRAIN") == "1":
    # Django imports settings on the main thread; runserver imports the WSGI
    # app on a thread of its own, where the call in sigterm_app is a no-op.
    import meterstream

    meterstream.drain_on_sigterm()
