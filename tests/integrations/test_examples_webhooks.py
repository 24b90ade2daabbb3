"""Each example app mounts Stripe's webhook endpoint at /stripe/webhook."""

from __future__ import annotations

import importlib
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

import meterstream
from meterstream.emulator._webhooks import sign

ROOT = Path(__file__).resolve().parents[2]
WHSEC = "whsec_examples"
OTHER = b'{"id": "evt_1", "object": "v2.core.event", "type": "v1.account.updated"}'


def import_example(name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module(name)


def check(post: Any) -> None:
    """Signed: acknowledged (an event type that is not a report); forged: 400."""
    good = post(OTHER, sign(OTHER, WHSEC, int(time.time())))
    assert good == (200, {"received": True, "handled": False})
    assert post(OTHER, sign(OTHER, "whsec_forger", int(time.time())))[0] == 400


@pytest.fixture(autouse=True)
def _client() -> Any:
    client = meterstream.configure(exporter="memory", flush_interval=3600, webhook_secret=WHSEC)
    yield client
    client.shutdown(0)


def test_the_flask_example_mounts_the_webhook(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("flask")
    http = import_example("examples.flask_app.app", monkeypatch).create_app().test_client()

    def post(body: bytes, signature: str) -> tuple[int, Any]:
        r = http.post("/stripe/webhook", data=body, headers={"Stripe-Signature": signature})
        return r.status_code, r.get_json()

    check(post)


def test_the_fastapi_example_mounts_the_webhook(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastapi")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx2")
        from starlette.testclient import TestClient
    example = import_example("examples.fastapi_app.app", monkeypatch)
    with TestClient(example.app) as http:

        def post(body: bytes, signature: str) -> tuple[int, Any]:
            r = http.post("/stripe/webhook", content=body, headers={"Stripe-Signature": signature})
            return r.status_code, r.json()

        check(post)


def test_the_django_example_mounts_the_webhook(monkeypatch: pytest.MonkeyPatch) -> None:
    django = pytest.importorskip("django")
    monkeypatch.syspath_prepend(str(ROOT))
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            SECRET_KEY="meterstream-tests",
            ALLOWED_HOSTS=["*"],
            INSTALLED_APPS=["meterstream.integrations.django"],
            DATABASES={},
            METERSTREAM={},
        )
        django.setup()
    from django.test import Client
    from django.test.utils import override_settings

    with override_settings(ROOT_URLCONF="examples.django_app.urls", MIDDLEWARE=[]):
        http = Client()

        def post(body: bytes, signature: str) -> tuple[int, Any]:
            r = http.post(
                "/stripe/webhook",
                data=body,
                content_type="application/json",
                headers={"Stripe-Signature": signature},
            )
            return r.status_code, r.json()

        check(post)
