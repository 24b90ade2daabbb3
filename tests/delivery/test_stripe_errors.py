"""``_exporters/stripe/_errors.py``: what an answer from Stripe means, in one place.

End to end, against servers, these verdicts are proved by test_answer_classes.py
and test_hostile_server.py; here each rule is pinned on its own.
"""

from __future__ import annotations

import json
from typing import Optional

import httpx
import pytest

from meterstream._exporters.stripe._errors import (
    error_fields,
    event_param,
    retry_after,
    retryable,
    should_retry,
)


@pytest.mark.parametrize(
    ("status", "verdict", "expected"),
    [
        (408, None, True),
        (409, None, True),
        (429, None, True),
        (500, None, True),
        (503, None, True),
        (400, None, False),
        (402, None, False),
        (404, None, False),
        (400, True, True),  # Stripe-Should-Retry wins both ways
        (503, False, False),
        (429, False, False),
    ],
)
def test_retryable_follows_stripe_should_retry_then_the_status(
    status: int, verdict: Optional[bool], expected: bool
) -> None:
    assert retryable(status, verdict) is expected


@pytest.mark.parametrize(
    ("header", "expected"), [("true", True), (" False ", False), ("maybe", None), (None, None)]
)
def test_should_retry_reads_the_header(header: Optional[str], expected: Optional[bool]) -> None:
    headers = {} if header is None else {"Stripe-Should-Retry": header}
    assert should_retry(httpx.Response(500, headers=headers)) is expected


def test_retry_after_in_seconds_or_absent() -> None:
    assert retry_after(httpx.Headers({"Retry-After": "2.5"})) == 2.5
    assert retry_after(httpx.Headers({"Retry-After": "-3"})) == 0.0
    assert retry_after(httpx.Headers({})) is None
    assert retry_after(httpx.Headers({"Retry-After": "soon"})) is None


def test_error_fields_of_a_v2_error_and_of_a_body_that_is_not_json() -> None:
    body = {"error": {"type": "invalid_request", "code": "bad", "message": "no sk_test_abc"}}
    response = httpx.Response(400, content=json.dumps(body).encode())
    assert error_fields(response) == ("invalid_request", "bad", "no sk_test_abc")
    # A secret echoed back does not reach logs and exceptions.
    assert error_fields(response, "sk_test_abc") == ("invalid_request", "bad", "no sk_test_***")
    assert error_fields(httpx.Response(502, content=b"<html>gateway</html>")) == (
        None,
        None,
        "<html>gateway</html>",
    )


@pytest.mark.parametrize(
    ("param", "count", "expected"),
    [
        ("events[3].payload", 5, ("events[3].payload", 3)),
        ("events[5]", 5, ("events[5]", None)),  # not an event of this request
        ("identifier", 5, ("identifier", None)),
        (7, 5, (None, None)),
    ],
)
def test_event_param_names_the_event_a_400_is_about(
    param: object, count: int, expected: tuple[Optional[str], Optional[int]]
) -> None:
    body = {"error": {"code": "x", "message": "m", "param": param}}
    assert event_param(httpx.Response(400, content=json.dumps(body).encode()), count) == expected
