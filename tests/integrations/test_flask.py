"""Flask: the Meterstream extension with Flask's test client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("flask")

from flask import Flask, abort, g, jsonify, request, stream_with_context

import meterstream
from helpers.recorded import sent
from meterstream.integrations.flask import Meterstream, header, user_attribute

BY_HEADER = header("X-Customer-Id")


@meterstream.meter("ai_search_api")
def search(query: str) -> dict[str, Any]:
    return {"query": query, "customer": meterstream.current_customer()}


@meterstream.meter("chunks")
def chunk(n: int) -> str:
    return f"{n}:{meterstream.current_customer()};"


def make_app(config: Any = None, **options: Any) -> tuple[Flask, Meterstream]:
    app = Flask(__name__)
    app.config["METERSTREAM"] = config if config is not None else {"customer_resolver": BY_HEADER}

    @app.before_request
    def load_user() -> None:  # registered before the extension: g.user is ready for it
        name = request.headers.get("X-User")
        g.user = (
            SimpleNamespace(is_authenticated=True, stripe_customer_id=f"cus_{name}")
            if name
            else None
        )

    ext = Meterstream(app, **options)

    @app.get("/search")
    def search_view() -> Any:
        return jsonify(search(request.args.get("q", "")))

    @app.get("/asearch")
    async def async_search_view() -> Any:
        await asyncio.sleep(0)
        return jsonify(search("q"))

    @app.get("/status/<int:code>")
    def status_view(code: int) -> Any:
        if code >= 400:
            abort(code)
        return "", code

    @app.get("/crash")
    def crash() -> Any:
        raise RuntimeError("boom")

    @app.get("/stream")
    def stream() -> Any:
        return app.response_class((chunk(n) for n in range(3)), mimetype="text/plain")

    @app.get("/stream-with-context")
    def stream_ctx() -> Any:
        @stream_with_context
        def body() -> Iterator[str]:
            for n in range(2):
                yield chunk(n)

        return app.response_class(body(), mimetype="text/plain")

    return app, ext


@pytest.fixture(autouse=True)
def _no_leak() -> Iterator[None]:
    yield
    assert meterstream.current_customer() is None


def test_views_see_the_requests_customer_and_bill_it(client: meterstream.MeterClient) -> None:
    app, _ = make_app()
    http = app.test_client()
    for n in range(4):
        response = http.get("/search?q=shoes", headers={"X-Customer-Id": f"cus_{n % 2}"})
        assert response.json == {"query": "shoes", "customer": f"cus_{n % 2}"}
        assert meterstream.current_customer() is None
    assert response.status_code == 200
    assert (
        sorted(sent(client))
        == [("ai_search_api", "cus_0", "1")] * 2 + [("ai_search_api", "cus_1", "1")] * 2
    )


def test_an_async_view_sees_the_requests_customer(client: meterstream.MeterClient) -> None:
    app, _ = make_app()
    response = app.test_client().get("/asearch", headers={"X-Customer-Id": "cus_a"})
    assert response.json["customer"] == "cus_a"
    assert sent(client) == [("ai_search_api", "cus_a", "1")]


def test_config_core_settings_configure_the_default_client_with_init_app() -> None:
    ext = Meterstream()
    app = Flask(__name__)
    app.config["METERSTREAM"] = {
        "exporter": "memory",
        "flush_interval": 3600,
        "customer_resolver": f"{__name__}.BY_HEADER",
        "request_event": "api_requests",
    }
    ext.init_app(app)

    @app.get("/")
    def index() -> str:
        return "ok"

    app.test_client().get("/", headers={"X-Customer-Id": "cus_i"})
    client = meterstream.get_client()
    assert client.settings.exporter == "memory"
    assert sent(client) == [("api_requests", "cus_i", "1")]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"api_kye": "x"}, "did you mean 'api_key'"),
        ({"batch_size": 0}, "batch_size: must be between 1 and 100"),
        ({"request_event_statuses": "9xx"}, r"METERSTREAM\['request_event_statuses'\]"),
    ],
)
def test_a_wrong_setting_fails_init_app_with_a_clear_message(config: Any, message: str) -> None:
    with pytest.raises(meterstream.ConfigurationError, match=message):
        make_app(config)


def test_an_unknown_keyword_option_is_refused() -> None:
    with pytest.raises(meterstream.ConfigurationError, match="unknown option 'request_evnt'"):
        Meterstream(request_evnt="x")


def test_user_attribute_reads_g_user(client: meterstream.MeterClient) -> None:
    app, _ = make_app({"customer_resolver": user_attribute("stripe_customer_id")})
    http = app.test_client()
    assert http.get("/search", headers={"X-User": "ann"}).json["customer"] == "cus_ann"
    assert http.get("/search").json["customer"] is None
    assert sent(client) == [("ai_search_api", "cus_ann", "1")]
    assert client.stats()["dropped_missing_customer"] == 1


def test_a_raising_resolver_is_logged_counted_and_never_a_500(
    client: meterstream.MeterClient, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(request: Any) -> str:
        raise LookupError("api key table unavailable")

    app, ext = make_app({"customer_resolver": broken})
    http = app.test_client()
    with caplog.at_level(logging.ERROR, logger="meterstream"):
        codes = [http.get("/search").status_code for _ in range(3)]
    assert codes == [200] * 3
    assert ext.resolver_errors == 3
    assert sum("api key table unavailable" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(
    ("statuses", "billed"), [(None, [200, 201]), (["2xx", 404], [200, 201, 404])]
)
def test_request_event_bills_only_the_configured_statuses(
    client: meterstream.MeterClient, statuses: Any, billed: list[int]
) -> None:
    app, _ = make_app(
        {
            "customer_resolver": BY_HEADER,
            "request_event": "api_requests",
            "request_event_statuses": statuses,
        }
    )
    http = app.test_client()
    for code in (200, 201, 302, 404, 500):
        # Error pages come back as body iterators: billed once sent, so read them.
        http.get(f"/status/{code}", headers={"X-Customer-Id": f"cus_{code}"}).get_data()
    crash = http.get("/crash", headers={"X-Customer-Id": "cus_crash"})
    assert crash.status_code == 500
    crash.get_data()
    assert sorted(sent(client)) == [("api_requests", f"cus_{s}", "1") for s in billed]


def test_request_event_without_customer_follows_the_policy_and_keeps_the_response() -> None:
    meterstream.configure(exporter="memory", on_missing_customer="raise")
    app, _ = make_app({"customer_resolver": BY_HEADER, "request_event": "api_requests"})
    assert app.test_client().get("/status/200").status_code == 200
    assert app.extensions["meterstream"].request_event_errors == 1
    assert sent(meterstream.get_client()) == []


@pytest.mark.parametrize("path", ["/stream", "/stream-with-context"])
def test_a_streamed_response_is_made_with_the_customer_and_billed_once_complete(
    client: meterstream.MeterClient, path: str
) -> None:
    app, _ = make_app({"customer_resolver": BY_HEADER, "request_event": "api_requests"})
    response = app.test_client().get(path, headers={"X-Customer-Id": "cus_s"}, buffered=False)
    assert [e for e in sent(client) if e[0] == "api_requests"] == []  # not complete yet
    body = response.get_data(as_text=True)
    response.close()
    n = 3 if path == "/stream" else 2
    assert body == "".join(f"{k}:cus_s;" for k in range(n))
    assert sorted(sent(client)) == [("api_requests", "cus_s", "1")] + [("chunks", "cus_s", "1")] * n


def test_flush_each_request_delivers_before_the_response_returns(
    client: meterstream.MeterClient,
) -> None:
    app, _ = make_app(flush_each_request=True, request_event="api_requests")
    app.test_client().get("/search", headers={"X-Customer-Id": "cus_f"})
    names = sorted(e["event_name"] for e in client.exporter.events)  # type: ignore[attr-defined]
    assert names == ["ai_search_api", "api_requests"]


def test_keyword_options_win_over_the_config(client: meterstream.MeterClient) -> None:
    app, _ = make_app(
        {"customer_resolver": BY_HEADER, "request_event": "from_config"},
        request_event="from_kwargs",
    )
    app.test_client().get("/status/200", headers={"X-Customer-Id": "cus_k"})
    assert sent(client) == [("from_kwargs", "cus_k", "1")]
