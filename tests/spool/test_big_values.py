"""Values past SQLite's 64-bit integers go through a spool exactly.

``record()`` accepts values of at most 15 digits as written (Stripe's rule,
meterstream._digits), far below SQLite's ``2**63 - 1``; a spool still keeps
any int it is given (an older version's rows, up to 40 digits) as its decimal
text, and gives it back as it was.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable

import pytest

import meterstream
from meterstream._record.checks import format_value
from meterstream._spool.spool import Spool
from meterstream.emulator import Emulator

BIG = [
    10**20,
    -(10**20),
    9_223_372_036_854_780_000,  # just past SQLite's largest integer, 15 significant digits
    -9_223_372_036_854_780_000,
    123456789012345 * 10**25,  # 40 digits, 15 significant
    Decimal("1E+30"),
    Decimal("-98765.4321"),
]


#: The extremes record() accepts: 15 digits as written, at either end.
RECORDABLE = [
    999_999_999_999_999,
    -999_999_999_999_999,
    Decimal("9.99999999999999E+14"),
    Decimal("-98765.4321"),
    Decimal("1E-30"),
]


def _values(emulator: Emulator) -> list[str]:
    return [str(event["payload"]["value"]) for event in emulator.state.events("api")]


@pytest.mark.parametrize("raise_errors", [False, True])
def test_the_largest_values_recorded_through_a_spool_arrive_exactly(
    make_client: Callable[..., meterstream.MeterClient],
    emulator: Emulator,
    spool_path: str,
    raise_errors: bool,
) -> None:
    client = make_client(emulator.url, spool_path=spool_path, raise_errors=raise_errors)
    for n, value in enumerate(RECORDABLE):
        client.record("api", value, customer="cus_1", identifier=f"big-{n}")
    assert client.flush(20)
    stats = client.stats()
    assert stats["sent"] == len(RECORDABLE)
    assert not {k: v for k, v in stats.items() if k.startswith("dropped") and v}
    assert _values(emulator) == [meterstream_format(value) for value in RECORDABLE]


def meterstream_format(value: Any) -> str:
    """How the value is written on the wire without a spool."""
    return format_value(value)


def test_a_big_int_comes_back_from_the_spool_with_its_value(spool_path: str) -> None:
    spool = Spool(spool_path)
    try:
        for n, value in enumerate(BIG):
            spool.append_row(("api", "cus_1", value, 1.0, f"id-{n}", None))
        batch = spool.claim(100)
        assert [event[2] for event in batch.events] == BIG
        spool.ack(batch.seqs)
        accepted = spool.accepted_between(0.0, 2.0)
        assert [row[2] for row in accepted] == BIG
    finally:
        spool.close()
