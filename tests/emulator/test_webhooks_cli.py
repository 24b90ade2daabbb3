"""``meterstream emulator --webhook URL --webhook-secret whsec_...`` in its own process."""

from __future__ import annotations

import httpx
import pytest

from helpers.emulator_api import SECRET
from helpers.webhook_receiver import running_receiver
from meterstream.emulator import Emulator

stripe = pytest.importorskip("stripe")

WHSEC = "whsec_cli_tests"


@pytest.mark.slow
def test_the_command_line_emulator_posts_signed_reports_to_its_webhook() -> None:
    with running_receiver() as receiver:
        args = ["--webhook", receiver.url, "--webhook-secret", WHSEC]
        args += ["--validation-interval", "0.2"]
        with Emulator.spawn(extra_args=args) as emu, httpx.Client(base_url=emu.url) as http:
            token = http.post(
                "/v2/billing/meter_event_session", headers={"Authorization": f"Bearer {SECRET}"}
            ).json()["authentication_token"]
            sent = http.post(
                "/v2/billing/meter_event_stream",
                json={
                    "events": [
                        {
                            "identifier": "cli-1",
                            "event_name": "no_meter_for_this",
                            "payload": {"stripe_customer_id": "cus_1", "value": "1"},
                        }
                    ]
                },
                headers={"Authorization": f"Bearer {token}"},
            )
            assert sent.status_code == 200
            ((headers, body),) = receiver.wait_for(1)
            client = stripe.StripeClient(SECRET, base_addresses={"api": emu.url})
            notification = client.parse_event_notification(body, headers["Stripe-Signature"], WHSEC)
            assert notification.type == "v1.billing.meter.no_meter_found"
            event = notification.fetch_event()
            (kind,) = event.data.reason.error_types
            assert kind.sample_errors[0].request.identifier == "cli-1"
            (endpoint,) = http.get("/_emulator/webhooks").json()["endpoints"]
            assert endpoint["url"] == receiver.url
