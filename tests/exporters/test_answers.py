"""The retry verdicts and waits Stripe's and Metronome's exporters share."""

from __future__ import annotations

from typing import Optional

import httpx
import pytest

from meterstream._exporters import answers
from meterstream._exporters.metronome import _errors as metronome
from meterstream._exporters.stripe import _errors as stripe


@pytest.mark.parametrize("status", [400, 401, 404, 408, 409, 422, 429, 500, 503])
@pytest.mark.parametrize("verdict", [None, True, False])
def test_both_exporters_sort_an_answer_alike(status: int, verdict: Optional[bool]) -> None:
    expected = verdict if verdict is not None else status in (408, 409, 429) or status >= 500
    assert answers.retryable(status, verdict) is expected
    assert stripe.retryable(status, verdict) is expected
    assert metronome.retryable(status, verdict) is expected


def test_each_reads_its_own_verdict_header() -> None:
    headers = httpx.Headers({"Stripe-Should-Retry": "false", "X-Should-Retry": "true"})
    assert stripe.should_retry(httpx.Response(500, headers=headers)) is False
    assert metronome.should_retry(headers) is True
    assert answers.should_retry(httpx.Headers({}), "x-should-retry") is None


def test_only_metronome_reads_a_wait_in_milliseconds() -> None:
    headers = httpx.Headers({"retry-after-ms": "250", "retry-after": "3"})
    assert metronome.retry_after(headers) == 0.25
    assert stripe.retry_after(headers) == 3.0
    assert (
        answers.retry_after({"retry-after-ms": "soon", "retry-after": "2"}, "retry-after-ms") == 2
    )
