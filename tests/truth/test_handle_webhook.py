"""handle_webhook against the emulator: verify, fetch thin events, count, report once."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

import meterstream
from helpers.webhooks import API_KEY, WHSEC, record_bad_events, reported_thin_events, signed
from meterstream._spool.spool import Spool
from meterstream._truth.webhooks import verify_signature
from meterstream.emulator import Emulator
from meterstream.emulator._webhooks import sign

stripe = pytest.importorskip("stripe")


def test_a_thin_report_is_fetched_counted_and_handed_to_on_validation_error(
    client: meterstream.MeterClient,
    emulator: Emulator,
    reports: list[meterstream.ValidationReport],
) -> None:
    record_bad_events(client)
    thin = reported_thin_events(emulator)
    assert len(thin) == 2 and all("data" not in e for e in thin)
    handled = [meterstream.handle_webhook(*signed(e), client=client) for e in thin]
    assert reports == handled
    by_type = {r.type: r for r in reports}
    no_meter = by_type["v1.billing.meter.no_meter_found"]
    assert no_meter.meter is None
    assert [(e.code, e.identifiers, e.error_count) for e in no_meter.errors] == [
        ("no_meter", ("unknown-1",), 1)
    ]
    report = by_type["v1.billing.meter.error_report_triggered"]
    assert report.meter and report.meter.startswith("mtr_")
    (error,) = report.errors
    assert error.code == "meter_event_no_customer_defined"
    assert error.identifiers == ("nocust-1",) and error.message
    assert report.validation_start and report.validation_end and report.summary
    stats = client.stats()
    assert stats["rejected_by_stripe"] == 2
    assert stats["rejected_by_stripe_no_meter"] == 1
    assert stats["rejected_by_stripe_meter_event_no_customer_defined"] == 1
    assert stats["sent"] == 3  # Stripe accepted all three, then rejected two


def test_an_event_delivered_twice_is_handled_once(
    client: meterstream.MeterClient,
    emulator: Emulator,
    reports: list[meterstream.ValidationReport],
) -> None:
    record_bad_events(client)
    first = reported_thin_events(emulator)[0]
    body, header = signed(first)
    assert meterstream.handle_webhook(body, header, client=client) is not None
    assert meterstream.handle_webhook(body, header, client=client) is None
    assert meterstream.handle_webhook(*signed(first), client=client) is None  # re-signed
    assert len(reports) == 1 and client.stats()["rejected_by_stripe"] == 1


@pytest.mark.parametrize("how", ["forged", "stale", "missing", "garbled", "no_v1", "other_body"])
def test_a_bad_signature_raises_and_changes_nothing(
    client: meterstream.MeterClient,
    emulator: Emulator,
    reports: list[meterstream.ValidationReport],
    how: str,
) -> None:
    record_bad_events(client)
    event = reported_thin_events(emulator)[0]
    body, header = signed(event)
    if how == "forged":
        body, header = signed(event, "whsec_attacker")
    elif how == "stale":
        body, header = signed(event, at=time.time() - 301)
    elif how == "missing":
        header = ""
    elif how == "garbled":
        header = "t=soon,v1=zz"
    elif how == "no_v1":
        header = header.split(",")[0] + ",v0=abc"
    elif how == "other_body":
        body = body.replace(b'"type"', b' "type"')
    with pytest.raises(meterstream.WebhookSignatureError):
        meterstream.handle_webhook(body, header, client=client)
    assert reports == [] and client.stats()["rejected_by_stripe"] == 0
    # Refused, not remembered: the genuine delivery is still handled.
    assert meterstream.handle_webhook(*signed(event), client=client) is not None


def test_any_of_several_v1_signatures_may_match_while_a_secret_is_rolled() -> None:
    body = b'{"id": "evt_1"}'
    now = int(time.time())
    old = stripe.WebhookSignature.generate_signature_header(body.decode(), "whsec_old", now)
    new = stripe.WebhookSignature.generate_signature_header(body.decode(), WHSEC, now)
    header = f"{old},v1={new.split('v1=')[1]}"
    verify_signature(body, header, WHSEC)
    verify_signature(body, header, "whsec_old")
    with pytest.raises(meterstream.WebhookSignatureError):
        verify_signature(body, header, "whsec_third")


def test_what_stripe_python_signs_is_verified_and_the_tolerance_is_300_seconds() -> None:
    body = b'{"id": "evt_1", "type": "x"}'
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), WHSEC)
    verify_signature(body, header, WHSEC)
    at = int(time.time()) - 299
    verify_signature(body, f"t={at},v1=" + _sig(body, at), WHSEC)
    with pytest.raises(meterstream.WebhookSignatureError, match="tolerance"):
        verify_signature(body, f"t={at - 2},v1=" + _sig(body, at - 2), WHSEC)


def _sig(body: bytes, at: int) -> str:
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), WHSEC, at)
    return str(header.split("v1=")[1])


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"type": "v1.billing.meter.no_meter_found"}', b"\xff\xfe"],
)
def test_a_signed_but_malformed_body_raises_webhook_error(
    client: meterstream.MeterClient, body: bytes
) -> None:
    header = sign(body, WHSEC, int(time.time()))
    with pytest.raises(meterstream.WebhookError):
        meterstream.handle_webhook(body, header, client=client)
    assert client.stats()["rejected_by_stripe"] == 0


def test_an_oversized_body_is_refused_before_it_is_read(client: meterstream.MeterClient) -> None:
    body = b"{" + b" " * (1 << 20) + b"}"
    with pytest.raises(meterstream.WebhookError, match="larger"):
        meterstream.handle_webhook(body, "t=1,v1=00", client=client)


def test_other_event_types_are_acknowledged_and_ignored(
    client: meterstream.MeterClient, reports: list[meterstream.ValidationReport]
) -> None:
    event = {"id": "evt_other", "object": "v2.core.event", "type": "v1.billing.meter.updated"}
    assert meterstream.handle_webhook(*signed(event), client=client) is None
    assert reports == [] and client.stats()["rejected_by_stripe"] == 0


def test_the_secret_comes_from_the_setting_else_stripe_webhook_secret(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = {"id": "evt_other", "object": "v2.core.event", "type": "something.else"}
    bare = meterstream.MeterClient(exporter="none")
    try:
        with pytest.raises(meterstream.ConfigurationError, match="webhook_secret"):
            meterstream.handle_webhook(*signed(event), client=bare)
        monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WHSEC)
        assert meterstream.handle_webhook(*signed(event), client=bare) is None
        assert "whsec_webhook" not in repr(meterstream.MeterClient(webhook_secret=WHSEC).settings)
    finally:
        bare.shutdown(0)


def test_a_failing_callback_is_logged_and_the_report_still_counted(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(report: meterstream.ValidationReport) -> None:
        raise RuntimeError("callback bug")

    client = meterstream.MeterClient(
        api_key="sk_test_x",
        api_base=emulator.api_base,
        stream_base=emulator.stream_base,
        webhook_secret=WHSEC,
        on_validation_error=explode,
    )
    try:
        record_bad_events(client)
        with caplog.at_level(logging.ERROR, logger="meterstream"):
            for event in reported_thin_events(emulator):
                assert meterstream.handle_webhook(*signed(event), client=client) is not None
        assert client.stats()["rejected_by_stripe"] == 2
        assert "callback bug" in caplog.text
    finally:
        client.shutdown(2)


def test_on_validation_error_may_be_a_dotted_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERSTREAM_ON_VALIDATION_ERROR", "json:dumps")
    client = meterstream.MeterClient(exporter="none")
    try:
        assert client.settings.on_validation_error is json.dumps
    finally:
        client.shutdown(0)


def test_reported_identifiers_move_from_the_spool_to_dead_letters_and_unknown_ones_are_logged(
    client: meterstream.MeterClient,
    emulator: Emulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    record_bad_events(client)
    spool = Spool(str(tmp_path / "spool.db"))
    # As the spool will hold them once it is wired in: accepted by record(),
    # identifiers kept. Only nocust-1 is in it; unknown-1 is not.
    spool.append_row(("by_account", "cus_1", 1, time.time(), "nocust-1", None))
    spool.append_row(("priced", "cus_1", 1, time.time(), "good-1", None))
    client.spool = spool
    try:
        with caplog.at_level(logging.WARNING, logger="meterstream"):
            for event in reported_thin_events(emulator):
                meterstream.handle_webhook(*signed(event), client=client)
        (letter,) = list(spool.admin.export("dead"))
        assert letter["identifier"] == "nocust-1"
        assert letter["code"] == "meter_event_no_customer_defined"
        assert [e["identifier"] for e in spool.admin.export("pending")] == ["good-1"]
        assert "not in the spool" in caplog.text
        assert client.stats()["rejected_by_stripe"] == 2
    finally:
        client.spool = None
        spool.close()


def test_the_full_event_fetch_failing_raises_so_stripe_retries(
    client: meterstream.MeterClient, emulator: Emulator, reports: list[meterstream.ValidationReport]
) -> None:
    record_bad_events(client)
    event = reported_thin_events(emulator)[0]
    gone = dict(event, id="evt_unknown_to_stripe")
    with pytest.raises(meterstream.DeliveryError):
        meterstream.handle_webhook(*signed(gone), client=client)
    assert reports == []
    # Not remembered as handled: Stripe's retry of the real event is handled.
    assert meterstream.handle_webhook(*signed(event), client=client) is not None


def test_a_report_delivered_to_another_process_on_the_same_spool_is_handled_once(
    emulator: Emulator,
    reports: list[meterstream.ValidationReport],
    tmp_path: Path,
) -> None:
    def worker() -> meterstream.MeterClient:  # a gunicorn worker: its own client, one spool
        return meterstream.MeterClient(
            api_key=API_KEY,
            api_base=emulator.api_base,
            stream_base=emulator.stream_base,
            webhook_secret=WHSEC,
            on_validation_error=reports.append,
            spool_path=str(tmp_path / "spool.db"),
        )

    one, other = worker(), worker()
    try:
        record_bad_events(one)
        first = reported_thin_events(emulator)[0]
        assert one.handle_webhook(*signed(first)) is not None
        assert other.handle_webhook(*signed(first)) is None  # Stripe delivered it again
        assert len(reports) == 1
        assert one.spool is not None
        assert {d["identifier"] for d in one.spool.admin.export("dead")} & {"unknown-1", "nocust-1"}
    finally:
        one.shutdown(2)
        other.shutdown(2)
