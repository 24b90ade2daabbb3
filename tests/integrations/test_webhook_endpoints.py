"""Stripe's error reports reach real Django and ASGI apps through the emulator's webhooks.

The emulator accepts an event with no meter and one without the meter's
customer key, then reports them as Stripe does: signed thin events POSTed to
the app's endpoint, which fetches the full events, moves the events to the
spool's dead letters and calls ``on_validation_error``. Forged, stale and
replayed deliveries are refused.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

django = pytest.importorskip("django")
pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

import httpx  # noqa: E402
from django.conf import settings  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.urls import path  # noqa: E402

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="meterstream-tests",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["meterstream.integrations.django"],
        MIDDLEWARE=[],
        DATABASES={},
        USE_TZ=True,
        METERSTREAM={},
    )
    django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from starlette.applications import Starlette  # noqa: E402

import meterstream  # noqa: E402
from helpers.poll import wait_for  # noqa: E402
from meterstream._spool.spool import Spool  # noqa: E402
from meterstream.emulator import Emulator  # noqa: E402
from meterstream.emulator._webhooks import sign  # noqa: E402
from meterstream.integrations.asgi import StripeWebhook  # noqa: E402
from meterstream.integrations.django import stripe_webhook  # noqa: E402

WHSEC = "whsec_integration_tests"
urlpatterns = [path("stripe/webhook", stripe_webhook)]


def serve(app: Any) -> Iterator[str]:
    """Serve *app* with uvicorn on 127.0.0.1 in a thread; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert wait_for(lambda: server.started, 20)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


def django_app() -> Iterator[str]:
    with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=[]):
        yield from serve(get_asgi_application())


def asgi_app() -> Iterator[str]:
    app = Starlette()
    app.add_route("/stripe/webhook", StripeWebhook(), methods=["POST"])
    yield from serve(app)


@pytest.fixture(params=[django_app, asgi_app], ids=["django", "asgi"])
def app_url(request: pytest.FixtureRequest) -> Iterator[str]:
    factory: Callable[[], Iterator[str]] = request.param
    yield from factory()


@pytest.fixture
def setup(
    emulator: Emulator, app_url: str, tmp_path: Path
) -> Iterator[tuple[meterstream.MeterClient, list[meterstream.ValidationReport], Spool]]:
    emulator.state.webhooks.interval = 0.2
    emulator.state.webhooks.backoff = 0.05
    emulator.state.create_meter(
        {
            "display_name": "By account",
            "event_name": "by_account",
            "default_aggregation[formula]": "sum",
            "customer_mapping[event_payload_key]": "account",
        }
    )
    reports: list[meterstream.ValidationReport] = []
    client = meterstream.configure(
        api_key="sk_test_integration",
        api_base=emulator.api_base,
        stream_base=emulator.stream_base,
        webhook_secret=WHSEC,
        on_validation_error=reports.append,
    )
    spool = Spool(str(tmp_path / "spool.db"))
    client.spool = spool  # as the spool will be once it is wired in
    emulator.add_webhook(app_url + "/stripe/webhook", WHSEC)
    yield client, reports, spool
    client.spool = None
    spool.close()
    emulator.reset()


@pytest.mark.slow
def test_reports_for_an_unknown_meter_and_a_missing_customer_reach_the_app(
    setup: tuple[meterstream.MeterClient, list[meterstream.ValidationReport], Spool],
    emulator: Emulator,
    app_url: str,
) -> None:
    client, reports, spool = setup
    now = time.time()
    for name, ident in (("no_such_meter", "unknown-1"), ("by_account", "nocust-1")):
        spool.append((name, "cus_1", 1, now, ident, None))
        client.record(name, customer="cus_1", identifier=ident)
    assert client.flush(10)
    # As a spool holds them once Stripe took them: in its accepted history.
    spool.accepted_events(spool.journal.take(10))
    emulator.state.webhooks.poke()
    assert wait_for(lambda: len(reports) == 2, 30), emulator.state.webhooks.deliveries
    codes = sorted((e.code, e.identifiers) for r in reports for e in r.errors)
    assert codes == [
        ("meter_event_no_customer_defined", ("nocust-1",)),
        ("no_meter", ("unknown-1",)),
    ]
    assert sorted(d["identifier"] for d in spool.admin.export("dead")) == ["nocust-1", "unknown-1"]
    assert client.stats()["rejected_by_stripe"] == 2
    assert wait_for(
        lambda: [d["status"] for d in emulator.state.webhooks.deliveries] == ["delivered"] * 2
    )

    # Replayed: the same event, delivered (and signed) again, is acknowledged, not handled.
    event = json.loads(_delivered_body(emulator))
    body = json.dumps(event).encode()
    with httpx.Client(base_url=app_url, timeout=20) as http:
        replay = http.post(
            "/stripe/webhook", content=body, headers={"Stripe-Signature": _sig(body)}
        )
        assert replay.status_code == 200 and replay.json() == {"received": True, "handled": False}
        forged = http.post(
            "/stripe/webhook",
            content=body,
            headers={"Stripe-Signature": sign(body, "whsec_forger", int(time.time()))},
        )
        assert forged.status_code == 400
        stale = http.post(
            "/stripe/webhook",
            content=body,
            headers={"Stripe-Signature": sign(body, WHSEC, int(time.time()) - 600)},
        )
        assert stale.status_code == 400 and "tolerance" in stale.json()["error"]
    assert len(reports) == 2 and client.stats()["rejected_by_stripe"] == 2


def _sig(body: bytes) -> str:
    return sign(body, WHSEC, int(time.time()))


def _delivered_body(emulator: Emulator) -> bytes:
    event_id = emulator.state.webhooks.deliveries[0]["event"]
    event = emulator.state.core_event(event_id)
    return json.dumps({k: v for k, v in event.items() if k != "data"}).encode()


@pytest.mark.parametrize(
    ("body", "signed"),
    [
        (b'{"id": "evt_1", "type": "v1.billing.meter.no_meter_found"}', False),
        (b"this is not json", True),
        (b"{" + b" " * (1 << 20) + b"}", True),
    ],
    ids=["unsigned", "malformed", "oversized"],
)
def test_unsigned_malformed_and_oversized_bodies_get_400_and_change_nothing(
    setup: tuple[meterstream.MeterClient, list[meterstream.ValidationReport], Spool],
    app_url: str,
    body: bytes,
    signed: bool,
) -> None:
    client, reports, _ = setup
    headers = {"Stripe-Signature": _sig(body)} if signed else {}
    with httpx.Client(base_url=app_url, timeout=20) as http:
        answer = http.post("/stripe/webhook", content=body, headers=headers)
        assert answer.status_code == 400, answer.text
        assert http.get("/stripe/webhook").status_code == 405
    assert reports == [] and client.stats()["rejected_by_stripe"] == 0
