"""`meterstream relay --aggregate` mistakes: exit 2 with a hint naming the flag."""

from __future__ import annotations

import pytest

from meterstream.cli import main

BASE = ("relay", "--nats-url", "nats://127.0.0.1:1", "--api-key", "sk_test_1")


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (("--aggregate", "tokens"), "--aggregate: expected event_name=sum pairs"),
        (("--aggregate", "tokens=count"), "--aggregate['tokens']: unknown aggregation mode"),
        (("--aggregate", "{not json"), "--aggregate: expected a JSON object"),
        (("--aggregate", "tokens=sum", "--aggregation-window", "7"), "--aggregation-window"),
        (("--aggregate", "tokens=sum", "--aggregation-window", "x"), "--aggregation-window"),
    ],
)
def test_a_bad_aggregate_exits_2_naming_the_flag(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], hint: str
) -> None:
    code = main([*BASE, *args])
    err = capsys.readouterr().err
    assert code == 2
    assert hint in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
