"""The Flask view for Stripe's webhooks, mounted in one line."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("flask")

from flask import Flask

import meterstream
from meterstream.emulator import Emulator
from meterstream.emulator._reports import thin_event
from meterstream.emulator._webhooks import sign
from meterstream.integrations.flask import stripe_webhook

WHSEC = "whsec_flask_tests"


def test_the_flask_view_handles_a_report_and_refuses_a_forged_one(emulator: Emulator) -> None:
    reports: list[meterstream.ValidationReport] = []
    client = meterstream.configure(
        api_key="sk_test_flask",
        api_base=emulator.api_base,
        stream_base=emulator.stream_base,
        webhook_secret=WHSEC,
        on_validation_error=reports.append,
    )
    client.record("no_such_meter", customer="cus_1", identifier="unknown-1")
    assert client.flush(10)
    (event,) = [thin_event(e) for e in emulator.state.validate()]
    body = json.dumps(event).encode()
    app = Flask(__name__)
    app.add_url_rule("/stripe/webhook", view_func=stripe_webhook, methods=["POST"])
    http = app.test_client()
    forged = http.post(
        "/stripe/webhook",
        data=body,
        headers={"Stripe-Signature": sign(body, "whsec_forger", int(time.time()))},
    )
    assert forged.status_code == 400 and reports == []
    ok = http.post(
        "/stripe/webhook",
        data=body,
        headers={"Stripe-Signature": sign(body, WHSEC, int(time.time()))},
    )
    assert ok.status_code == 200 and ok.get_json() == {"received": True, "handled": True}
    (report,) = reports
    assert report.identifiers == ("unknown-1",) and report.errors[0].code == "no_meter"
    assert client.stats()["rejected_by_stripe"] == 1
    too_big = http.post("/stripe/webhook", data=b"x" * ((1 << 20) + 1))
    assert too_big.status_code == 400
