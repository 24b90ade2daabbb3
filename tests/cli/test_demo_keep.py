"""``meterstream demo`` says where the page is; ``--keep`` keeps it up to look at."""

from __future__ import annotations

import re

import httpx
import pytest

from meterstream.cli._demo import run_demo

pytestmark = pytest.mark.slow


def test_keep_leaves_the_page_up_with_the_demos_usage(capsys: pytest.CaptureFixture[str]) -> None:
    seen: dict[str, object] = {}

    def look() -> None:
        out = capsys.readouterr().out
        page = re.search(r"See what is metered, live: (http://\S+/)\n", out)
        assert page is not None, out
        assert "stays up" in out
        seen["html"] = httpx.get(page.group(1)).text
        seen["overview"] = httpx.get(page.group(1) + "_emulator/overview").json()

    assert run_demo(calls=40, customers=2, workers=2, progress=False, keep=True, wait=look) == 0
    assert "<title>meterstream emulator</title>" in str(seen["html"])
    overview = seen["overview"]
    assert isinstance(overview, dict)
    assert overview["counters"]["events_stored"] == 80
    assert {m["event_name"] for m in overview["meters"]} == {"ai_search_api", "llm_tokens"}


def test_without_keep_the_demo_still_prints_the_page_address(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_demo(calls=5, customers=1, workers=1, progress=False) == 0
    assert re.search(
        r"See what is metered, live: http://127\.0\.0\.1:\d+/\n", capsys.readouterr().out
    )
