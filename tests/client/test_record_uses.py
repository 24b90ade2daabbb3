"""``record_uses``: several uses of one customer in one call, as ``record_use`` each would."""

from __future__ import annotations

from typing import Any, Callable, Optional

import pytest

import meterstream
from helpers.clients import ClientFactory, parallel_settings
from meterstream._client.parallel import ParallelClient
from meterstream.emulator import Emulator
from meterstream.errors import InvalidEventError, MeterError, MissingCustomerError

DIMS = {"model": "openai/gpt-4o-mini", "token_type": "input"}
OUT = {"model": "openai/gpt-4o-mini", "token_type": "output"}
USES: list[tuple[str, Any, Optional[dict[str, str]]]] = [
    ("tokens", 7, DIMS),
    ("tokens", 3, OUT),
    ("other", 2, None),
]

#: The counts stats() keeps that a use can change.
COUNTS = (
    "dropped_invalid",
    "dropped_missing_customer",
    "dropped_shutdown",
    "dropped_disabled",
    "memory",
)


def _one_by_one(
    client: meterstream.MeterClient,
    uses: list[tuple[str, Any, Optional[dict[str, str]]]],
    customer: Optional[str],
    on_error: Optional[Callable[[MeterError], object]],
) -> None:
    for name, value, dims in uses:
        try:
            client.record_use(name, value, customer, None, dims, None)
        except MeterError as exc:
            if on_error is None:
                raise
            on_error(exc)


def _outcome(
    record: Callable[..., None],
    uses: list[tuple[str, Any, Optional[dict[str, str]]]],
    customer: Optional[str],
    *,
    context: Optional[str] = "cus_ctx",
    close: bool = False,
    **settings: Any,
) -> tuple[list[tuple[Any, ...]], dict[str, Any], list[str]]:
    """The events delivered, the counts and the errors handed back, for one way of recording."""
    client = meterstream.MeterClient(exporter="memory", **settings)
    errors: list[str] = []
    try:
        if close:
            client.shutdown(0)
        with meterstream.customer(context):
            record(client, uses, customer, lambda exc: errors.append(repr(exc)))
        client.flush(5)
        events = [
            (e["event_name"], tuple(sorted(e["payload"].items())))
            for e in client.exporter.events  # type: ignore[attr-defined]
        ]
        stats = client.stats()
        counts = {k: stats.get(k) for k in COUNTS}
    finally:
        client.shutdown(0)
    return sorted(events), counts, errors


def _batched(
    client: meterstream.MeterClient,
    uses: list[tuple[str, Any, Optional[dict[str, str]]]],
    customer: Optional[str],
    on_error: Optional[Callable[[MeterError], object]],
) -> None:
    client.record_uses(uses, customer, on_error)


CASES: list[
    tuple[str, list[tuple[str, Any, Optional[dict[str, str]]]], Optional[str], dict[str, Any]]
] = [
    ("plain", USES, "cus_1", {}),
    ("the customer from the context", USES, None, {}),
    ("no customer at all", USES, None, {"context": None}),
    ("an invalid customer", USES, "", {}),
    (
        "an invalid value among good ones",
        [*USES[:1], ("tokens", -1.5j, OUT), *USES[2:]],
        "cus_1",
        {},
    ),
    ("a dimension that is a payload key", [("tokens", 1, {"value": "x"}), *USES], "cus_1", {}),
    ("a value that is not a plain int", [("tokens", 2.5, DIMS), ("tokens", "4", OUT)], "cus_1", {}),
    ("aggregated", USES, "cus_1", {"aggregate": {"tokens": "sum"}}),
    ("sync mode", USES, "cus_1", {"sync_mode": True}),
    ("a disabled event name", USES, "cus_1", {"disabled_events": ["other"]}),
    ("after shutdown", USES, "cus_1", {"close": True}),
    (
        "raise_errors",
        [*USES[:1], ("tokens", -1.5j, OUT), *USES[2:]],
        "cus_1",
        {"raise_errors": True},
    ),
    ("on_missing_customer=raise", USES, None, {"context": None, "on_missing_customer": "raise"}),
]


@pytest.mark.parametrize(("case", "uses", "customer", "settings"), CASES, ids=[c[0] for c in CASES])
def test_record_uses_delivers_counts_and_raises_what_record_use_does_one_by_one(
    case: str,
    uses: list[tuple[str, Any, Optional[dict[str, str]]]],
    customer: Optional[str],
    settings: dict[str, Any],
) -> None:
    expected = _outcome(_one_by_one, uses, customer, **settings)
    assert _outcome(_batched, uses, customer, **settings) == expected
    # The same client twice: the customer is known the second time (the fast path).
    twice = _outcome(lambda c, *a: (_batched(c, *a), _batched(c, *a)), uses, customer, **settings)
    assert twice == _outcome(
        lambda c, *a: (_one_by_one(c, *a), _one_by_one(c, *a)), uses, customer, **settings
    )


def test_with_a_spool_record_uses_journals_what_record_use_does(tmp_path: Any) -> None:
    one = _outcome(_one_by_one, USES, "cus_1", spool_path=str(tmp_path / "one.db"))
    batched = _outcome(_batched, USES, "cus_1", spool_path=str(tmp_path / "batched.db"))
    assert batched == one
    assert len(batched[0]) == len(USES) and batched[2] == []


def test_each_use_has_its_own_identifier_and_all_share_one_timestamp(
    memory_client: meterstream.MeterClient,
) -> None:
    memory_client.record_uses(USES, "cus_1")  # the customer checked (the general path)
    memory_client.record_uses(USES, "cus_1")  # and known: one clock read
    memory_client.flush(5)
    events = memory_client.exporter.events  # type: ignore[attr-defined]
    assert len({e["identifier"] for e in events}) == 6
    assert len({e["timestamp"] for e in events[3:]}) == 1


def test_without_on_error_the_first_error_is_raised() -> None:
    client = meterstream.MeterClient(exporter="memory", raise_errors=True)
    try:
        with pytest.raises(InvalidEventError):
            client.record_uses([("tokens", -1.5j, None), *USES], "cus_1")
        with pytest.raises(MissingCustomerError):
            meterstream.MeterClient.record_uses(
                meterstream.MeterClient(exporter="memory", on_missing_customer="raise"),
                USES,
                None,
            )
    finally:
        client.shutdown(0)


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"auto_create_meters": True}


@pytest.fixture
def client_settings(emulator: Emulator) -> dict[str, Any]:
    return parallel_settings(emulator.url, flush_interval=0.01)


def test_a_parallel_run_records_each_use_at_both_with_one_identifier(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client()
    assert isinstance(client, ParallelClient)
    errors: list[MeterError] = []
    client.record_uses([*USES, ("tokens", 1j, None)], "cus_1", errors.append)
    client.record_uses(USES, "cus_1", errors.append)
    assert client.flush(5)
    stripe = [(e["identifier"], e["event_name"], e["customer"]) for e in emulator.state.events()]
    metronome = emulator.state.metronome.events()
    assert [e["transaction_id"] for e in metronome] == [i for i, _, _ in stripe]
    assert [(n, c) for _, n, c in stripe] == [(n, "cus_1") for n, _, _ in USES] * 2
    assert errors == []  # 1j is invalid, counted at each destination
    assert client.stats()["dropped_invalid"] == 2
