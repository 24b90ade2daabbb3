"""Redraw docs/img/emulator-page.png: the emulator's page with sample usage.

Starts the emulator, meters a day of sample usage through a real MeterClient
(three meters, five customers, a few events Stripe would reject, a webhook
endpoint that answers 500, a fault that refuses some requests), opens the page
in headless Chromium and saves a screenshot. Needs the dev extra (playwright)
and a Chromium binary (Debian: ``apt-get install chromium``).

    python tools/page_screenshot.py [--out docs/img/emulator-page.png] [--chromium PATH]
"""

from __future__ import annotations

import argparse
import http.server
import random
import shutil
import sys
import threading
import time
from pathlib import Path

import httpx

from meterstream import MeterClient
from meterstream.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CUSTOMERS = ["cus_acme", "cus_globex", "cus_initech", "cus_umbrella", "cus_hooli"]


class _Failing(http.server.BaseHTTPRequestHandler):
    """A webhook endpoint that is down: every POST gets a 500."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def record_sample(emulator: Emulator) -> None:
    base = emulator.url
    key = "sk_test_page_screenshot"
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as api:
        for name, display, formula in (
            ("api_requests", "API requests", "count"),
            ("llm_tokens", "LLM tokens", "sum"),
            ("storage_gb", "Storage (GB)", "last"),
        ):
            form = {
                "display_name": display,
                "event_name": name,
                "default_aggregation[formula]": formula,
            }
            api.post("/v1/billing/meters", data=form).raise_for_status()
    rng = random.Random(29)
    now = time.time()
    client = MeterClient(api_key=key, api_base=base, stream_base=base, exporter="stripe")
    try:
        for hour in range(23, -1, -1):
            busy = 0.4 + 0.6 * abs(12 - hour) / 12  # quieter in the middle of the day
            for _ in range(int(rng.randint(18, 30) * busy)):
                customer = rng.choice(CUSTOMERS[: rng.randint(2, 5)])
                stamp = now - hour * 3600 - rng.uniform(0, 3500)
                client.record("api_requests", customer=customer, timestamp=stamp)
                client.record(
                    "llm_tokens",
                    customer=customer,
                    value=rng.randint(200, 4000),
                    timestamp=stamp,
                )
            for n, customer in enumerate(CUSTOMERS):
                client.record(
                    "storage_gb",
                    customer=customer,
                    value=10 + n * 7 + (23 - hour) // 4,
                    timestamp=now - hour * 3600,
                )
        client.flush(30)
        # Stripe accepts these, then reports them: no meter, no customer.
        client.record("image_renders", customer="cus_acme", value=3)
        client.record("llm_tokens", customer="", value=120)
        client.flush(30)
        emulator.set_faults(fail_429=1.0)
        client.record("api_requests", customer="cus_hooli")
        client.flush(2)
        emulator.set_faults(fail_429=0.0)
        client.flush(30)
    finally:
        client.shutdown(5)
    emulator.state.validate()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "img" / "emulator-page.png"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    with Emulator() as emulator:
        emulator.state.webhooks.backoff = 0.05
        emulator.add_webhook(f"http://127.0.0.1:{hook.server_port}/hook", "whsec_screenshot")
        record_sample(emulator)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
            page = browser.new_page(viewport={"width": args.width, "height": 900})
            page.goto(emulator.url + "/")
            page.wait_for_selector("#events tbody tr[data-identifier]")
            page.wait_for_selector("#deliveries tbody .badge")
            page.wait_for_timeout(300)  # let the new-row highlight fade
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    hook.shutdown()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
