"""Asynchronous validation: reports as v2 core events, webhooks signed as Stripe signs them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from helpers.emulator_api import SECRET, Api, event
from helpers.webhook_receiver import Receiver, running_receiver
from meterstream.emulator import Emulator
from meterstream.emulator.__main__ import main as emulator_main

stripe = pytest.importorskip("stripe")

WHSEC = "whsec_emulator_tests"


@pytest.fixture
def receiver(emulator: Emulator) -> Iterator[Receiver]:
    sender = emulator.state.webhooks
    with running_receiver() as receiver:
        sender.backoff, sender.interval = 0.05, 0.2
        yield receiver
        emulator.state.webhooks.reset()
        sender.backoff, sender.interval, sender.max_attempts = 0.5, 1.0, 8


def wait_until(predicate: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def send_bad_events(api: Api) -> None:
    """One event with no meter, one with no customer, one with a bad value."""
    api.meter("priced")
    r = api.stream(
        {
            "events": [
                event("n1", name="no_such_meter"),
                {"identifier": "c1", "event_name": "priced", "payload": {"value": "1"}},
                event("v1", name="priced", value="lots"),
                event("ok1", name="priced"),
            ]
        }
    )
    assert r.status_code == 200  # accepted now, reported later


def stripe_client(emulator: Emulator) -> Any:
    return stripe.StripeClient(SECRET, base_addresses={"api": emulator.url})


def test_reports_reach_a_webhook_and_stripe_python_verifies_parses_and_fetches_them(
    emulator: Emulator, api: Api, receiver: Receiver
) -> None:
    emulator.add_webhook(receiver.url, WHSEC)
    send_bad_events(api)
    emulator.state.webhooks.poke()
    requests = receiver.wait_for(2)
    assert len(requests) == 2
    client = stripe_client(emulator)
    by_type = {}
    for headers, body in requests:
        notification = client.parse_event_notification(body, headers["Stripe-Signature"], WHSEC)
        assert "data" not in json.loads(body)  # a thin event
        by_type[notification.type] = notification
    no_meter = by_type["v1.billing.meter.no_meter_found"]
    assert type(no_meter).__name__ == "V1BillingMeterNoMeterFoundEventNotification"
    full = no_meter.fetch_event()
    assert type(full).__name__ == "V1BillingMeterNoMeterFoundEvent"
    (kind,) = full.data.reason.error_types
    assert kind.code == "no_meter" and kind.error_count == 1
    assert kind.sample_errors[0].request.identifier == "n1"
    assert full.data.validation_start <= full.data.validation_end

    report = by_type["v1.billing.meter.error_report_triggered"]
    meter = report.fetch_related_object()
    assert meter.event_name == "priced"
    event_ = report.fetch_event()
    assert event_.related_object.id == meter.id
    codes = {
        t.code: [s.request.identifier for s in t.sample_errors]
        for t in event_.data.reason.error_types
    }
    assert codes == {"meter_event_no_customer_defined": ["c1"], "meter_event_invalid_value": ["v1"]}
    assert event_.data.reason.error_count == 2
    assert event_.data.developer_message_summary


def test_the_signature_is_stripes_hmac_of_timestamp_and_body(
    emulator: Emulator, api: Api, receiver: Receiver
) -> None:
    emulator.add_webhook(receiver.url, WHSEC)
    api.stream({"events": [event("n1", name="nothing_here")]})
    emulator.state.webhooks.poke()
    ((headers, body),) = receiver.wait_for(1)
    parts = dict(p.split("=", 1) for p in headers["Stripe-Signature"].split(","))
    assert abs(int(parts["t"]) - time.time()) < 60
    expected = stripe.WebhookSignature.generate_signature_header(
        body.decode(), WHSEC, timestamp=int(parts["t"])
    )
    assert headers["Stripe-Signature"] == expected
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(body, headers["Stripe-Signature"], "whsec_other")


def test_a_failing_endpoint_is_retried_until_it_answers(
    emulator: Emulator, api: Api, receiver: Receiver
) -> None:
    receiver.fail_next = 2
    emulator.add_webhook(receiver.url, WHSEC)
    api.stream({"events": [event("n1", name="nothing_here")]})
    emulator.state.webhooks.poke()
    assert len(receiver.wait_for(1)) == 1
    assert wait_until(lambda: emulator.state.webhooks.deliveries[0]["status"] == "delivered")
    (delivery,) = emulator.state.webhooks.deliveries
    assert delivery["attempts"] == 3 and receiver.attempts == 3


def test_a_delivery_that_never_succeeds_is_kept_as_failed_in_the_admin_state(
    emulator: Emulator, api: Api, http: httpx.Client, receiver: Receiver
) -> None:
    receiver.fail_next = 1000
    emulator.state.webhooks.max_attempts = 3
    emulator.add_webhook(receiver.url, WHSEC)
    api.stream({"events": [event("n1", name="nothing_here")]})
    emulator.state.webhooks.poke()

    def failed() -> bool:
        deliveries = http.get("/_emulator/webhooks").json()["deliveries"]
        return bool(deliveries) and deliveries[0]["status"] == "failed"

    assert wait_until(failed)
    (delivery,) = http.get("/_emulator/state").json()["webhooks"]["deliveries"]
    assert delivery["attempts"] == 3 and delivery["last_status"] == 500
    assert "secret" not in json.dumps(http.get("/_emulator/webhooks").json())


def test_an_endpoint_added_through_the_admin_api_receives_reports(
    emulator: Emulator, api: Api, http: httpx.Client, receiver: Receiver
) -> None:
    bad = http.post("/_emulator/webhooks", json={"url": receiver.url, "secret": "nope"})
    assert bad.status_code == 400 and "secret" in bad.json()["error"]["message"]
    added = http.post("/_emulator/webhooks", json={"url": receiver.url, "secret": WHSEC})
    assert added.status_code == 200
    api.stream({"events": [event("n1", name="nothing_here")]})
    assert http.post("/_emulator/validate").json()["reported"]
    assert len(receiver.wait_for(1)) == 1
    endpoint_id = added.json()["id"]
    assert http.delete("/_emulator/webhooks", params={"id": endpoint_id}).status_code == 200
    assert http.get("/_emulator/webhooks").json()["endpoints"] == []


def test_events_are_listed_newest_first_and_fetched_with_the_secret_key(
    emulator: Emulator, api: Api, http: httpx.Client
) -> None:
    api.stream({"events": [event("n1", name="first_unknown")]})
    assert len(emulator.state.validate()) == 1
    api.stream({"events": [event("n2", name="second_unknown")]})
    listed = api.get("/v2/core/events").json()
    assert [
        e["data"]["reason"]["error_types"][0]["sample_errors"][0]["request"]["identifier"]
        for e in listed["data"]
    ] == ["n2", "n1"]
    first = listed["data"][1]
    assert api.get(f"/v2/core/events/{first['id']}").json() == first
    page = api.get("/v2/core/events", limit=1).json()
    assert len(page["data"]) == 1 and page["next_page_url"]
    assert api.get("/v2/core/events/evt_missing").status_code == 404
    assert http.get(f"/v2/core/events/{first['id']}").status_code == 401
    # The second window starts where the first ended.
    assert listed["data"][0]["data"]["validation_start"] == first["data"]["validation_end"]


def test_customers_the_emulator_does_not_know_are_reported_customer_not_found(
    emulator: Emulator, api: Api
) -> None:
    emulator.state.known_customers = {"cus_known"}
    try:
        api.meter("priced")
        api.stream(
            {
                "events": [
                    event("k1", name="priced", customer="cus_known"),
                    event("u1", name="priced", customer="cus_ghost"),
                ]
            }
        )
        (report,) = emulator.state.validate()
    finally:
        emulator.state.known_customers = None
    (kind,) = report["data"]["reason"]["error_types"]
    assert kind["code"] == "meter_event_customer_not_found"
    assert kind["sample_errors"][0]["request"]["identifier"] == "u1"
    assert emulator.state.total("priced", "cus_known").count == 1


def test_a_validation_pass_reports_each_error_once(emulator: Emulator, api: Api) -> None:
    api.stream({"events": [event("n1", name="nothing_here")]})
    assert len(emulator.state.validate()) == 1
    assert emulator.state.validate() == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--webhook", "http://127.0.0.1:9/hook"], "--webhook-secret"),
        (["--webhook", "ftp://x", "--webhook-secret", WHSEC], "--webhook"),
        (["--webhook-secret", "sk_test_x"], "--webhook-secret"),
        (["--validation-interval", "0"], "--validation-interval"),
    ],
)
def test_webhook_flag_mistakes_exit_2_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert emulator_main(["--port", "0", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
