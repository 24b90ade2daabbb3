"""OpenTelemetry: spans, span events, metrics, baggage, the span processor.

The SDK is installed process-wide once (OpenTelemetry allows one global
provider per process); the "no SDK" case runs in a child interpreter.
"""

from __future__ import annotations

import http.server
import json
import random
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import baggage, metrics, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

import meterstream
from meterstream import _otel
from meterstream.emulator import Emulator
from meterstream.integrations.opentelemetry import MeteringSpanProcessor, SpanRule

KEY = "sk_test_otel"
SPANS = InMemorySpanExporter()
READER = InMemoryMetricReader()
_installed: list[bool] = []


class OwnRandomIds(RandomIdGenerator):
    """The SDK's random ids, drawn from a ``Random`` of their own.

    The SDK installed here stays for the rest of the process, so the clients
    of later tests end spans on their delivery threads. The default generator
    draws those ids from the global ``random`` module, and Hypothesis fails a
    test whose global random state moves while it draws examples
    (tests/record/test_hostile_input.py, when it runs after this module).
    """

    def __init__(self) -> None:
        self._random = random.Random()

    def generate_span_id(self) -> int:
        span_id = self._random.getrandbits(64)
        while span_id == trace.INVALID_SPAN_ID:
            span_id = self._random.getrandbits(64)
        return span_id

    def generate_trace_id(self) -> int:
        trace_id = self._random.getrandbits(128)
        while trace_id == trace.INVALID_TRACE_ID:
            trace_id = self._random.getrandbits(128)
        return trace_id


@pytest.fixture(autouse=True)
def sdk() -> Iterator[None]:
    if not _installed:
        provider = TracerProvider(id_generator=OwnRandomIds())
        provider.add_span_processor(SimpleSpanProcessor(SPANS))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
        _installed.append(True)
    SPANS.clear()
    yield


@pytest.fixture
def emulator_options() -> dict[str, Any]:
    return {"auto_create_meters": True}


def stripe_client(emu: Emulator, **settings: Any) -> meterstream.MeterClient:
    options: dict[str, Any] = {
        "api_key": KEY,
        "api_base": emu.url,
        "stream_base": emu.url,
        "retry_initial_delay": 0.001,
        "retry_max_delay": 0.01,
    }
    options.update(settings)
    return meterstream.MeterClient(**options)


def spans_named(name: str) -> list[Any]:
    return [s for s in SPANS.get_finished_spans() if s.name == name]


def test_session_and_export_spans_describe_each_request(emulator: Emulator) -> None:
    client = stripe_client(emulator)
    for name in ("a", "a", "b"):
        client.record(name, customer="cus_1")
    assert client.flush(10)
    (session,) = spans_named("meterstream.session.create")
    assert session.attributes["http.response.status_code"] == 200
    (export,) = spans_named("meterstream.export")
    attrs = export.attributes
    assert attrs["meterstream.batch.size"] == 3
    assert dict(
        zip(attrs["meterstream.batch.event_names"], attrs["meterstream.batch.event_counts"])
    ) == {"a": 2, "b": 1}
    assert attrs["meterstream.attempt"] == 1
    assert attrs["http.response.status_code"] == 200
    assert attrs["meterstream.outcome"] == "sent"
    assert export.instrumentation_scope.name == "meterstream"
    assert export.instrumentation_scope.version == meterstream.__version__
    client.shutdown(2)


def test_a_failed_attempt_is_an_error_span_and_the_retry_another(emulator: Emulator) -> None:
    # No meters read first: the first attempt must meet the 500 before the timer ends it.
    client = stripe_client(emulator, check_event_names=False)
    emulator.set_faults(fail_500=1.0)
    client.record("a", customer="cus_1")
    threading.Timer(0.05, lambda: emulator.set_faults(fail_500=0.0)).start()
    assert client.flush(10)
    exports = spans_named("meterstream.export")
    first, last = exports[0], exports[-1]
    assert first.status.status_code == trace.StatusCode.ERROR
    assert first.attributes["meterstream.outcome"] == "retry"
    assert first.attributes["http.response.status_code"] == 500
    assert any(e.name == "exception" for e in first.events)
    assert last.attributes["meterstream.outcome"] == "sent"
    assert last.attributes["meterstream.attempt"] == len(exports)
    client.shutdown(2)


def test_the_librarys_own_requests_are_not_traced_by_httpx_instrumentation(
    emulator: Emulator,
) -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument()
    try:
        client = stripe_client(emulator)  # its httpx.Client is made while instrumented
        client.record("a", customer="cus_1")
        assert client.flush(10)
        client.shutdown(2)
        ours = {"meterstream.export", "meterstream.session.create"}
        assert [s.name for s in SPANS.get_finished_spans() if s.name not in ours] == []
        with httpx.Client() as http:  # the instrumentation is live: a plain request is traced
            http.get(emulator.url + "/_emulator/health")
        assert [s for s in SPANS.get_finished_spans() if s.name not in ours]
    finally:
        instrumentor.uninstrument()


def test_each_record_adds_a_span_event_without_the_customer_by_default() -> None:
    client = meterstream.MeterClient(exporter="memory")
    tracer = trace.get_tracer("app")
    with tracer.start_as_current_span("request"), meterstream.customer("cus_1"):
        client.record("llm_tokens", 12, identifier="req-1")
        client.meter("ai_search_api")(lambda: None)()
    (span,) = spans_named("request")
    events = [e for e in span.events if e.name == "meterstream.record"]
    assert [dict(e.attributes) for e in events][0] == {
        "meterstream.event_name": "llm_tokens",
        "meterstream.value": 12,
        "meterstream.identifier": "req-1",
    }
    assert events[1].attributes["meterstream.identifier"].startswith("ms_")
    client.shutdown(0)


def test_the_customer_goes_on_span_events_only_when_asked() -> None:
    client = meterstream.MeterClient(exporter="memory", otel_record_customer=True)
    with trace.get_tracer("app").start_as_current_span("request"):
        client.record("calls", customer="cus_7")
    (span,) = spans_named("request")
    assert span.events[0].attributes["meterstream.customer_id"] == "cus_7"
    client.shutdown(0)


def test_span_events_can_be_switched_off() -> None:
    client = meterstream.MeterClient(exporter="memory", otel_span_events=False)
    with trace.get_tracer("app").start_as_current_span("request"):
        client.record("calls", customer="cus_7")
    (span,) = spans_named("request")
    assert list(span.events) == []
    client.shutdown(0)


def metric_points(name: str) -> list[Any]:
    data = READER.get_metrics_data()
    points: list[Any] = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    points.extend(metric.data.data_points)
    return points


def value_for(name: str, client: meterstream.MeterClient, **attrs: str) -> Any:
    for point in metric_points(name):
        labels = dict(point.attributes)
        if labels.get("meterstream.client") == client.name and all(
            labels.get(k) == v for k, v in attrs.items()
        ):
            return point.value
    return None


def test_metrics_agree_with_stats(emulator: Emulator) -> None:
    client = stripe_client(emulator, on_missing_customer="drop")
    for _ in range(7):
        client.record("calls", customer="cus_1")
    client.record("calls")  # no customer: dropped
    client.record("calls", "not a number", customer="cus_1")  # invalid: dropped
    assert client.flush(10)
    stats = client.stats()
    assert value_for("meterstream.events.recorded", client) == stats["recorded"] == 7
    assert value_for("meterstream.events.sent", client) == stats["sent"] == 7
    assert value_for("meterstream.events.dropped", client, reason="invalid") == 1
    assert value_for("meterstream.events.dropped", client, reason="missing_customer") == 1
    assert value_for("meterstream.events.failed", client, reason="rejected") == 0
    assert value_for("meterstream.sessions.opened", client) == stats["sessions_opened"] == 1
    assert value_for("meterstream.queue.depth", client) == stats["queued"] == 0
    histogram = [p for p in metric_points("meterstream.export.duration")]
    assert histogram and sum(p.count for p in histogram) >= 1
    client.shutdown(2)


def test_customer_blocks_put_the_customer_in_baggage() -> None:
    assert baggage.get_baggage("meterstream.customer_id") is None
    with meterstream.customer("cus_1"):
        assert baggage.get_baggage("meterstream.customer_id") == "cus_1"
        with meterstream.customer(None):
            assert baggage.get_baggage("meterstream.customer_id") is None
        assert baggage.get_baggage("meterstream.customer_id") == "cus_1"
    assert baggage.get_baggage("meterstream.customer_id") is None


def test_without_a_customer_the_lookup_falls_back_to_baggage() -> None:
    client = meterstream.MeterClient(exporter="memory")
    handler = client.meter("calls")(lambda: "ok")
    token = otel_context.attach(baggage.set_baggage("meterstream.customer_id", "cus_up"))
    try:
        assert handler() == "ok"
        client.record("calls")
    finally:
        otel_context.detach(token)
    assert client.flush(5)
    customers = [e["payload"]["stripe_customer_id"] for e in client.exporter.events]  # type: ignore[attr-defined]
    assert customers == ["cus_up", "cus_up"]
    client.shutdown(0)


class _Downstream(http.server.BaseHTTPRequestHandler):
    """Service B: extracts the caller's context from W3C headers, then meters."""

    client: meterstream.MeterClient

    def do_GET(self) -> None:
        token = otel_context.attach(propagate.extract(dict(self.headers.items())))
        try:
            self.client.meter("downstream_calls")(lambda: None)()
            body = json.dumps({"customer": meterstream.current_customer()}).encode()
        finally:
            otel_context.detach(token)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


def test_a_downstream_service_meters_under_the_callers_customer() -> None:
    client = meterstream.MeterClient(exporter="memory")
    _Downstream.client = client
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Downstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with meterstream.customer("cus_caller"):  # service A
            headers: dict[str, str] = {}
            propagate.inject(headers)
            assert "meterstream.customer_id=cus_caller" in headers["baggage"]
            response = httpx.get(f"http://127.0.0.1:{server.server_port}/", headers=headers)
        assert response.json() == {"customer": "cus_caller"}
        assert client.flush(5)
        (event,) = client.exporter.events  # type: ignore[attr-defined]
        assert event["payload"]["stripe_customer_id"] == "cus_caller"
    finally:
        server.shutdown()
        server.server_close()
        client.shutdown(0)


def test_baggage_can_be_turned_off() -> None:
    client = meterstream.MeterClient(exporter="memory", otel_baggage_key="")
    try:
        with client.customer("cus_1"):
            assert baggage.get_baggage("meterstream.customer_id") is None
    finally:
        client.shutdown(0)


def test_the_span_processor_meters_matching_spans() -> None:
    client = meterstream.MeterClient(exporter="memory")
    provider = TracerProvider()
    processor = MeteringSpanProcessor(
        [
            {
                "event_name": "llm_input_tokens",
                "value_attribute": "gen_ai.usage.input_tokens",
                "dimension_attributes": {"model": "gen_ai.request.model"},
            },
            SpanRule("llm_calls", span_name="chat *", customer_attribute="enduser.id"),
        ],
        client=client,
    )
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("app")
    with meterstream.customer("cus_1"):
        with tracer.start_as_current_span("chat gpt") as span:
            span.set_attribute("gen_ai.usage.input_tokens", 42)
            span.set_attribute("gen_ai.request.model", "m-1")
            span.set_attribute("enduser.id", "cus_other")
        with tracer.start_as_current_span("unrelated"):
            pass
    assert client.flush(5)
    events = {e["event_name"]: e for e in client.exporter.events}  # type: ignore[attr-defined]
    assert set(events) == {"llm_input_tokens", "llm_calls"}
    tokens = events["llm_input_tokens"]
    assert tokens["payload"] == {"stripe_customer_id": "cus_1", "value": "42", "model": "m-1"}
    assert tokens["identifier"].startswith("otel-") and tokens["identifier"].endswith("-0")
    assert events["llm_calls"]["payload"]["stripe_customer_id"] == "cus_other"
    assert processor.errors == 0
    provider.shutdown()
    client.shutdown(0)


def test_span_rules_are_checked() -> None:
    with pytest.raises(meterstream.ConfigurationError, match="unknown keys"):
        MeteringSpanProcessor([{"event_name": "x", "valu_attribute": "y"}])
    with pytest.raises(meterstream.ConfigurationError, match="event_name"):
        MeteringSpanProcessor([{"value_attribute": "y"}])


def test_a_broken_tracer_never_affects_recording_or_delivery(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, internal_errors: list[BaseException]
) -> None:
    class Broken:
        def start_span(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("broken SDK")

    monkeypatch.setattr(_otel, "tracer", Broken())
    before = _otel.errors
    client = stripe_client(emulator)
    for _ in range(5):
        client.record("calls", customer="cus_1")
    assert client.flush(10)
    assert emulator.state.total("calls", "cus_1").count == 5
    assert client.stats()["otel_errors"] > before
    internal_errors.clear()  # expected: the library reported what it swallowed
    client.shutdown(2)


def test_without_an_sdk_nothing_is_emitted_and_nothing_breaks() -> None:
    script = textwrap.dedent(
        """
        import meterstream
        from meterstream import _otel
        from opentelemetry import baggage
        client = meterstream.configure(exporter="memory")
        assert not _otel.sdk_active() and not client._path.span_events
        with meterstream.customer("cus_1"):
            meterstream.meter("calls")(lambda: None)()
            # nothing could propagate it: no baggage written (it costs ~2 us)
            assert baggage.get_baggage("meterstream.customer_id") is None
        explicit = meterstream.MeterClient(exporter="memory",
                                           otel_baggage_key="meterstream.customer_id")
        with explicit.customer("cus_2"):
            assert baggage.get_baggage("meterstream.customer_id") == "cus_2"
        with meterstream.customer("cus_3"):  # the default client's: still not written
            assert baggage.get_baggage("meterstream.customer_id") is None
        assert meterstream.flush(5)
        assert len(client.exporter.events) == 1
        assert meterstream.stats()["otel_errors"] == 0
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_events_stripe_rejected_later_are_counted_in_a_metric() -> None:
    from meterstream._truth.webhooks import ReportedError, ValidationReport

    client = meterstream.MeterClient(exporter="none")
    client.report_validation_errors(
        ValidationReport(
            event_id="evt_1",
            type="v1.billing.meter.no_meter_found",
            meter=None,
            validation_start=None,
            validation_end=None,
            summary="",
            error_count=3,
            errors=(ReportedError("no_meter", "No meter.", 3, ("a", "b")),),
        )
    )
    stats = client.stats()
    assert stats["rejected_by_stripe"] == stats["rejected_by_stripe_no_meter"] == 3
    assert value_for("meterstream.events.rejected_by_stripe", client) == 3
    client.shutdown(0)


def test_a_parallel_run_reports_each_destination(emulator: Emulator) -> None:
    client = meterstream.MeterClient(
        destinations=["stripe", "metronome"], exporter="memory", flush_interval=0.01
    )
    try:
        for _ in range(3):
            client.record("calls", customer="cus_1")
        assert client.flush(10)
        for destination in ("stripe", "metronome"):
            recorded = value_for(
                "meterstream.events.recorded", client, **{"meterstream.destination": destination}
            )
            assert recorded == 3
        single = stripe_client(emulator)
        single.record("calls", customer="cus_1")
        assert single.flush(10)
        assert (
            value_for("meterstream.events.sent", single, **{"meterstream.destination": "stripe"})
            == 1
        )
        single.shutdown(1)
    finally:
        client.shutdown(0)
