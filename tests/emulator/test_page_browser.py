"""The emulator's page in a real browser: headless Chromium, driven by Playwright.

Uses the system's Chromium (Debian's ``chromium`` package; ``.ci/run``
installs it), never a browser downloaded by Playwright. Skipped only when no
Chromium binary exists.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from helpers.emulator_api import Api, event
from meterstream.emulator import Emulator

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("METERSTREAM_TEST_CHROMIUM") or shutil.which("chromium") or ""
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


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM or not os.access(CHROMIUM, os.X_OK):
        pytest.skip("no Chromium binary (install Debian's chromium: apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, emulator: Emulator) -> Iterator[Page]:
    page = browser.new_page()
    errors: list[Any] = []
    page.on("pageerror", lambda error: errors.append(error))
    page.goto(emulator.url + "/")
    page.wait_for_selector("#live.live")
    yield page
    page.close()
    assert errors == [], errors  # the script never threw


def test_totals_new_events_and_an_error_report_appear_without_a_reload(
    page: Page, api: Api
) -> None:
    page.evaluate("window.__loaded_once = true")
    assert page.locator("#events tbody tr[data-identifier]").count() == 0
    api.meter("api_calls")
    token = api.token()
    api.stream(
        {
            "events": [
                event("b1", customer="cus_browser", value="4"),
                event("b2", customer="cus_browser", value="6"),
                event("b3", customer="cus_other", value="1"),
            ]
        },
        token,
    )
    row = page.locator('#totals tr[data-customer="cus_browser"]')
    row.wait_for()
    page.wait_for_function(
        "document.querySelector('#totals tr[data-customer=\"cus_browser\"] td:nth-child(3)')"
        ".textContent === '10'"
    )
    assert row.locator("td").nth(3).text_content() == "2"
    page.locator('#events tr[data-identifier="b3"]').wait_for()
    assert page.locator("#c-events").text_content() == "3"

    api.stream({"events": [event("bad", customer="cus_browser", value="lots")]}, token)
    page.locator("#reports tbody tr[data-report]").wait_for()
    report = page.locator("#reports tbody tr[data-report]").first.text_content() or ""
    assert "error_report_triggered" in report
    status = page.locator('#events tr[data-identifier="bad"] .badge').text_content()
    assert status == "meter_event_invalid_value"
    assert page.locator("#c-invalid").text_content() == "1"
    # The same document all along: nothing reloaded the page.
    assert page.evaluate("window.__loaded_once") is True


def test_the_chart_draws_a_bar_for_this_hours_usage(page: Page, api: Api) -> None:
    api.meter("api_calls")
    api.stream({"events": [event("c1", value="5")]})
    card = page.locator('.meter[data-event-name="api_calls"]')
    card.wait_for()
    bars = card.locator("svg rect.bar")
    assert bars.count() == 24
    page.wait_for_function(
        "[...document.querySelectorAll('.meter rect.bar')].at(-1).getAttribute('height') > 0"
    )
    title = bars.nth(23).locator("title").text_content() or ""
    assert "5 (1 events)" in title


def test_text_from_events_is_shown_as_text_never_as_html(page: Page, api: Api) -> None:
    api.meter("api_calls")
    api.stream({"events": [event("x1", customer="<img src=x onerror=alert(1)>")]})
    page.locator('#events tr[data-identifier="x1"]').wait_for()
    assert page.locator("#events img").count() == 0
    cell = page.locator('#events tr[data-identifier="x1"] td').nth(2).text_content()
    assert cell == "<img src=x onerror=alert(1)>"
