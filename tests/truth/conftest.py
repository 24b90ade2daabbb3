"""Fixtures for Stripe's error reports: an emulator with two meters, a client aimed at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import meterstream
from helpers.webhooks import API_KEY, BY_ACCOUNT_METER, WHSEC
from meterstream.emulator import Emulator


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    """No automatic meters; a sum meter ``priced``, and a meter ``by_account`` that
    reads its customer from the payload key ``account``."""
    return {
        "meters": [
            {
                "display_name": "Priced",
                "event_name": "priced",
                "default_aggregation[formula]": "sum",
            },
            BY_ACCOUNT_METER,
        ]
    }


@pytest.fixture
def reports() -> list[meterstream.ValidationReport]:
    return []


@pytest.fixture
def client(
    emulator: Emulator, reports: list[meterstream.ValidationReport]
) -> Iterator[meterstream.MeterClient]:
    client = meterstream.MeterClient(
        api_key=API_KEY,
        api_base=emulator.api_base,
        stream_base=emulator.stream_base,
        webhook_secret=WHSEC,
        on_validation_error=reports.append,
    )
    yield client
    client.shutdown(2)
