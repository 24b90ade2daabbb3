"""``stats()`` balances with ``aggregate``: ``recorded`` counts the events folds make.

``recorded``, ``queued``, ``sent`` (or the local exporter's key), ``failed``
and ``dropped`` count events, folded or not, so that after ``flush()``
``recorded == sent + failed + dropped + queued``; the uses behind them are
``recorded - aggregated_events + aggregated_uses``. The same with the
in-memory folder and with a spool's, through the memory exporter and
through the emulator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import meterstream
from meterstream.emulator import Emulator

SECRET = "sk_test_stats_aggregated"
AGGREGATED = {"cus_1": 10, "cus_2": 5}  # uses of the folded name, per customer
UNAGGREGATED = 3  # uses of a name not folded


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"meters": ["api_calls", "other"]}  # sum meters, so the client aggregates


@pytest.mark.parametrize("spool", [False, True], ids=["memory-folder", "spool-folder"])
@pytest.mark.parametrize("destination", ["memory", "emulator"])
def test_recorded_balances_with_what_was_delivered_after_folding(
    spool: bool, destination: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings: dict[str, Any] = {
        "aggregate": {"api_calls": "sum"},
        "aggregation_window": 60,
        "flush_interval": 3600,  # nothing leaves, and no window closes, before flush()
    }
    if spool:
        settings["spool_path"] = str(tmp_path / "spool.db")
    emulator: Emulator | None = None
    if destination == "memory":
        settings["exporter"] = "memory"
    else:
        emulator = request.getfixturevalue("emulator")
        settings.update(
            api_key=SECRET, api_base=emulator.api_base, stream_base=emulator.stream_base
        )
    client = meterstream.MeterClient(**settings)
    try:
        for customer, uses in AGGREGATED.items():
            for _ in range(uses):
                client.record("api_calls", 2, customer=customer)
        for _ in range(UNAGGREGATED):
            client.record("other", 1, customer="cus_1")
        uses = sum(AGGREGATED.values()) + UNAGGREGATED

        before = client.stats()
        assert before["aggregated_uses"] == sum(AGGREGATED.values())
        assert before["aggregated_events"] == 0  # every window still open
        assert before["recorded"] == before["queued"] == UNAGGREGATED

        assert client.flush(20)
        stats = client.stats()
        accepted = "memory" if destination == "memory" else "sent"
        if emulator is None:
            wire = list(client.exporter.events)  # type: ignore[attr-defined]
        else:
            wire = emulator.state.events("api_calls") + emulator.state.events("other")
        aggregated = [e for e in wire if e["event_name"] == "api_calls"]
        assert len(aggregated) == stats["aggregated_events"] >= len(AGGREGATED)
        assert sum(int(e["payload"]["value"]) for e in aggregated) == 2 * sum(AGGREGATED.values())
        assert stats["queued"] == 0 and stats["failed"] == stats["dropped"] == 0
        assert stats[accepted] == len(wire)
        # The balance a dashboard checks, in events ...
        assert stats["recorded"] == stats[accepted] + stats["failed"] + stats["dropped"]
        # ... and the uses behind them.
        assert stats["recorded"] - stats["aggregated_events"] + stats["aggregated_uses"] == uses
    finally:
        client.shutdown(5)
