"""The official metronome-sdk talks to the emulator's Metronome as it would to Metronome.

The client is strict (``_strict_response_validation=True``): every answer
must parse into the SDK's own models, so the emulator's shapes are checked
by Metronome's generated types, not by our reading of them.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from meterstream.emulator import Emulator

metronome = pytest.importorskip("metronome")


def _client(emulator: Emulator, token: str = "mt_test_token", **options: Any) -> Any:
    return metronome.Metronome(
        bearer_token=token,
        base_url=emulator.url,
        max_retries=0,
        _strict_response_validation=True,
        **options,
    )


def _today() -> dt.datetime:
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _event(ident: str, customer: str, value: str, **properties: str) -> dict[str, Any]:
    return {
        "transaction_id": ident,
        "customer_id": customer,
        "event_type": "llm_tokens",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "properties": {"value": value, **properties},
    }


def test_ingest_metrics_customers_and_usage_round_trip(emulator: Emulator) -> None:
    client = _client(emulator)
    customer = client.v1.customers.create(name="Acme", ingest_aliases=["cus_123"]).data
    assert customer.ingest_aliases == ["cus_123"]
    total = client.v1.billable_metrics.create(
        name="tokens",
        aggregation_type="SUM",
        aggregation_key="value",
        event_type_filter={"in_values": ["llm_tokens"]},
        property_filters=[{"name": "value", "exists": True}],
        group_keys=[["model"]],
    ).data.id
    calls = client.v1.billable_metrics.create(
        name="calls", aggregation_type="COUNT", event_type_filter={"in_values": ["llm_tokens"]}
    ).data.id
    client.v1.usage.ingest(
        usage=[
            _event("t1", "cus_123", "1.5", model="gpt"),
            _event("t2", "cus_123", "2", model="claude"),
            _event("t2", "cus_123", "2", model="claude"),  # a repeat: ignored
            _event("t3", customer.id, "10", model="gpt"),  # by Metronome id
        ]
    )
    start = _today()
    rows = list(
        client.v1.usage.list(
            starting_on=start,
            ending_before=start + dt.timedelta(days=1),
            window_size="DAY",
            customer_ids=[customer.id],
        )
    )
    values = {row.billable_metric_id: row.value for row in rows}
    assert values == {total: 13.5, calls: 3}
    groups = list(
        client.v1.usage.list_with_groups(
            billable_metric_id=total,
            customer_id=customer.id,
            window_size="NONE",
            group_key=["model"],
        )
    )
    assert {g.group["model"]: g.value for g in groups} == {"claude": 2, "gpt": 11.5}
    found = client.v1.usage.search(transaction_ids=["t2", "nope"])
    assert [e.transaction_id for e in found] == ["t2"]
    assert found[0].matched_customer.id == customer.id
    assert {m.name for m in found[0].matched_billable_metrics} == {"tokens", "calls"}
    assert emulator.state.metronome.duplicates == 1


def test_max_unique_and_latest_over_a_property(emulator: Emulator) -> None:
    client = _client(emulator)
    customer = client.v1.customers.create(name="Acme", ingest_aliases=["cus_9"]).data
    ids = {
        kind: client.v1.billable_metrics.create(
            name=kind.lower(), aggregation_type=kind, aggregation_key="value"
        ).data.id
        for kind in ("MAX", "UNIQUE")
    }
    client.v1.usage.ingest(
        usage=[_event(f"u{i}", "cus_9", v) for i, v in enumerate(["3", "7", "3", "5"])]
    )
    start = _today()
    rows = client.v1.usage.list(
        starting_on=start, ending_before=start + dt.timedelta(days=1), window_size="NONE"
    )
    values = {row.billable_metric_id: row.value for row in rows if row.customer_id == customer.id}
    assert values == {ids["MAX"]: 7, ids["UNIQUE"]: 3}


def test_property_filters_choose_the_events_a_metric_counts(emulator: Emulator) -> None:
    client = _client(emulator)
    customer = client.v1.customers.create(name="Acme", ingest_aliases=["cus_f"]).data
    gpt = client.v1.billable_metrics.create(
        name="gpt tokens",
        aggregation_type="SUM",
        aggregation_key="value",
        property_filters=[{"name": "model", "in_values": ["gpt"]}],
    ).data.id
    client.v1.usage.ingest(
        usage=[
            _event("f1", "cus_f", "4", model="gpt"),
            _event("f2", "cus_f", "6", model="claude"),
            _event("f3", "cus_f", "1"),
        ]
    )
    start = _today()
    (row,) = client.v1.usage.list(
        starting_on=start,
        ending_before=start + dt.timedelta(days=1),
        window_size="DAY",
        customer_ids=[customer.id],
        billable_metrics=[{"id": gpt}],
    )
    assert row.value == 4


def test_aliases_are_replaced_and_a_taken_alias_is_a_conflict(emulator: Emulator) -> None:
    client = _client(emulator)
    first = client.v1.customers.create(name="A", ingest_aliases=["cus_a"]).data
    client.v1.customers.set_ingest_aliases(customer_id=first.id, ingest_aliases=["cus_b"])
    assert client.v1.customers.retrieve(customer_id=first.id).data.ingest_aliases == ["cus_b"]
    with pytest.raises(metronome.ConflictError):
        client.v1.customers.create(name="B", ingest_aliases=["cus_b"])
    listed = list(client.v1.customers.list(ingest_alias="cus_b"))
    assert [c.id for c in listed] == [first.id]


@pytest.mark.parametrize(
    ("usage", "fragment"),
    [
        ([], "array is too short"),
        ([{**_event("x", "c", "1"), "timestamp": "yesterday"}], "[0].timestamp"),
        ([{**_event("x", "c", "1"), "timestamp": "2001-01-01T00:00:00Z"}], "34 days"),
        ([{k: v for k, v in _event("x", "c", "1").items() if k != "customer_id"}], "customer_id"),
        ([_event("x" * 129, "c", "1")], "at most 128"),
    ],
)
def test_a_bad_ingest_is_a_400_with_metronomes_message(
    emulator: Emulator, usage: list[dict[str, Any]], fragment: str
) -> None:
    with pytest.raises(metronome.BadRequestError) as info:
        _client(emulator).v1.usage.ingest(usage=usage)
    assert fragment in info.value.body["message"]
    assert emulator.state.metronome.snapshot()["events_stored"] == 0


def test_a_wrong_token_is_a_401(emulator: Emulator) -> None:
    emulator.state.metronome.tokens = {"right"}
    try:
        with pytest.raises(metronome.AuthenticationError):
            _client(emulator, token="wrong").v1.usage.ingest(usage=[_event("t", "c", "1")])
    finally:
        emulator.state.metronome.tokens = None


def test_injected_faults_reach_the_ingest_endpoint_in_metronomes_shape(
    emulator: Emulator,
) -> None:
    emulator.set_faults(fail_500=1.0, retry_after=0.01, should_retry=True)
    with pytest.raises(metronome.InternalServerError) as info:
        _client(emulator).v1.usage.ingest(usage=[_event("t", "c", "1")])
    assert info.value.response.headers["x-should-retry"] == "true"
    assert info.value.response.headers["retry-after"] == "0.01"
    assert "injected" in info.value.body["message"]
    emulator.set_faults(fail_500=0.0, should_retry=None, fail_429=1.0)
    with pytest.raises(metronome.RateLimitError):
        _client(emulator).v1.usage.ingest(usage=[_event("r2", "c", "1")])
    emulator.set_faults(fail_429=0.0)
    _client(emulator).v1.usage.ingest(usage=[_event("r1", "c", "1")])
    assert emulator.state.metronome.transaction_ids() == {"r1"}
