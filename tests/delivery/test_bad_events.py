"""One bad event costs only itself: encoding failures, 400s naming an event, bisection."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any, Callable

import meterstream
from meterstream.emulator import Emulator

Reports = list[tuple[list[dict[str, Any]], BaseException]]


def collector() -> tuple[Reports, Callable[[Any, BaseException], None]]:
    reports: Reports = []
    return reports, lambda events, error: reports.append((list(events), error))


def record_ids(client: meterstream.MeterClient, ids: list[str]) -> None:
    for ident in ids:
        client.record("api_calls", 1, customer="cus_1", identifier=ident)


def raw_event(identifier: str, value: Any = 1, age: float = 0.0) -> tuple[Any, ...]:
    """An event as the buffer holds it, past validation (as a bug could let one through)."""
    return ("api_calls", "cus_1", value, time.time() - age, identifier, None)


def test_an_event_that_cannot_be_encoded_is_set_aside_and_the_rest_are_sent(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    reports, callback = collector()
    client = make_client(max_retry_time=3, flush_interval=3600, on_delivery_error=callback)
    record_ids(client, [f"id-{n}" for n in range(50)])
    client._buffer.put(raw_event("bad-1", Decimal("1E+999999999")))
    record_ids(client, [f"id-{n}" for n in range(50, 99)])
    assert client.flush(10)
    stored = {e["identifier"] for e in emulator.state.events("api_calls")}
    assert stored == {f"id-{n}" for n in range(99)}
    assert len(reports) == 1
    events, error = reports[0]
    assert [e["identifier"] for e in events] == ["bad-1"]
    assert events[0]["payload"]["value"] == "1E+999999999"  # reported whatever encoding did
    assert error.reason == "rejected"  # type: ignore[attr-defined]
    assert "encod" in str(error)
    stats = client.stats()
    assert stats["sent"] == 99 and stats["failed_rejected"] == 1
    assert stats["retried"] == 0 and stats["queued"] == 0


def test_a_400_naming_one_event_reports_it_and_resends_the_rest_with_their_identifiers(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    reports, callback = collector()
    client = make_client(flush_interval=3600, on_delivery_error=callback)
    emulator.set_faults(reject_identifier="id-7")
    ids = [f"id-{n}" for n in range(20)]
    record_ids(client, ids)
    assert client.flush(10)
    stored = [e["identifier"] for e in emulator.state.events("api_calls")]
    assert sorted(stored) == sorted(i for i in ids if i != "id-7")
    assert len(reports) == 1
    events, error = reports[0]
    assert [e["identifier"] for e in events] == ["id-7"]
    assert error.status == 400 and error.param == "events[7]"  # type: ignore[attr-defined]
    assert error.index == 7  # type: ignore[attr-defined]
    stats = client.stats()
    assert stats["sent"] == 19 and stats["failed_rejected"] == 1 and stats["queued"] == 0


def test_a_400_naming_no_event_is_bisected_until_only_the_bad_events_are_left(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    reports, callback = collector()
    client = make_client(flush_interval=3600, on_delivery_error=callback)
    emulator.set_faults(reject_identifier="id-13", reject_names_event=False)
    ids = [f"id-{n}" for n in range(40)]
    record_ids(client, ids)
    assert client.flush(10)
    stored = [e["identifier"] for e in emulator.state.events("api_calls")]
    assert sorted(stored) == sorted(i for i in ids if i != "id-13")
    assert [e["identifier"] for events, _ in reports for e in events] == ["id-13"]
    stats = client.stats()
    assert stats["sent"] == 39 and stats["failed_rejected"] == 1 and stats["queued"] == 0


def test_events_that_grew_too_old_while_waiting_are_reported_one_by_one_before_sending(
    emulator: Emulator, make_client: Callable[..., meterstream.MeterClient]
) -> None:
    reports, callback = collector()
    client = make_client(flush_interval=3600, on_delivery_error=callback)
    record_ids(client, ["fresh-1"])
    client._buffer.put(raw_event("old-1", age=36 * 86400))
    client._buffer.put(raw_event("old-2", age=40 * 86400))
    record_ids(client, ["fresh-2"])
    assert client.flush(10)
    assert sorted(e["identifier"] for e in emulator.state.events("api_calls")) == [
        "fresh-1",
        "fresh-2",
    ]
    assert [[e["identifier"] for e in events] for events, _ in reports] == [["old-1"], ["old-2"]]
    assert all(
        error.code == "timestamp_too_far_in_past"  # type: ignore[attr-defined]
        for _, error in reports
    )
    # Never sent to be refused: the window is checked just before each send.
    assert "400" not in emulator.state.requests.get("meter_event_stream", {})
    stats = client.stats()
    assert stats["sent"] == 2 and stats["failed_rejected"] == 2
