"""ASGI (FastAPI, Starlette): the pure ASGI middleware and the FastAPI dependencies."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, Optional

import pytest

pytest.importorskip("starlette")
fastapi = pytest.importorskip("fastapi")

import httpx  # noqa: E402
from fastapi import Depends, FastAPI, HTTPException  # noqa: E402
from fastapi.responses import StreamingResponse  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.authentication import (  # noqa: E402
    AuthCredentials,
    AuthenticationBackend,
    SimpleUser,
)
from starlette.middleware import Middleware  # noqa: E402
from starlette.middleware.authentication import AuthenticationMiddleware  # noqa: E402
from starlette.requests import HTTPConnection, Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route, WebSocketRoute  # noqa: E402

with warnings.catch_warnings():
    # Starlette 1.x asks for httpx2 in its test client; httpx still works.
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient
from starlette.websockets import WebSocket  # noqa: E402

import meterstream  # noqa: E402
from helpers.recorded import sent  # noqa: E402
from meterstream.integrations.asgi import (  # noqa: E402
    MeterstreamMiddleware,
    current_customer,
    header,
    path_param,
    set_customer,
    user_attribute,
)

BY_HEADER = header("X-Customer-Id")


@meterstream.meter("ai_search_api")
def search(query: str) -> dict[str, Any]:
    return {"query": query, "customer": meterstream.current_customer()}


@meterstream.meter("ai_search_api")
async def asearch(query: str) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"query": query, "customer": meterstream.current_customer()}


def make_app(**options: Any) -> FastAPI:
    app = FastAPI()
    app.add_middleware(MeterstreamMiddleware, **options)

    @app.get("/sync")
    def sync_endpoint(q: str = "") -> dict[str, Any]:
        return search(q)

    @app.get("/async")
    async def async_endpoint(q: str = "") -> dict[str, Any]:
        return await asearch(q)

    @app.get("/status/{code}")
    async def status(code: int) -> JSONResponse:
        if code >= 400:
            raise HTTPException(status_code=code)
        return JSONResponse({}, status_code=code)

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for n in range(3):
                await asyncio.sleep(0)
                yield f"{n}:{meterstream.current_customer()};".encode()

        return StreamingResponse(body())

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"customer": meterstream.current_customer()})
        await websocket.close()

    return app


def middleware_of(app: Any) -> MeterstreamMiddleware:
    stack = app.middleware_stack
    while not isinstance(stack, MeterstreamMiddleware):
        stack = stack.app
    return stack


# -- customer per request ----------------------------------------------------------


def test_sync_and_async_endpoints_see_the_requests_customer(
    client: meterstream.MeterClient,
) -> None:
    with TestClient(make_app(customer_resolver=BY_HEADER)) as http:
        for path in ("/sync", "/async"):
            response = http.get(path, params={"q": "shoes"}, headers={"X-Customer-Id": "cus_1"})
            assert response.json() == {"query": "shoes", "customer": "cus_1"}
    assert sent(client) == [("ai_search_api", "cus_1", "1")] * 2


def test_concurrent_requests_never_see_each_others_customer(
    client: meterstream.MeterClient,
) -> None:
    app = make_app(customer_resolver=BY_HEADER)

    async def go() -> list[Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(
                *(http.get("/async", headers={"X-Customer-Id": f"cus_{n % 7}"}) for n in range(300))
            )

    responses = asyncio.run(go())
    assert [r.json()["customer"] for r in responses] == [f"cus_{n % 7}" for n in range(300)]
    events = sent(client)
    for k in range(7):
        assert events.count(("ai_search_api", f"cus_{k}", "1")) == len(range(k, 300, 7))


def test_header_values_are_checked_on_every_request_and_remembered_within_a_bound(
    client: meterstream.MeterClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meterstream.integrations import asgi

    monkeypatch.setattr(asgi, "_VALUES_KEPT", 8)
    # No baggage to write (an SDK may be installed by other tests): the
    # remembered-header path is the one under test.
    client = meterstream.configure(exporter="memory", flush_interval=3600, otel_baggage_key="")
    app = make_app(customer_resolver=BY_HEADER)
    too_long = "cus_" + "x" * 5000
    with TestClient(app) as http:
        customers = []
        for value in [" cus_1 ", "cus_1", "", too_long, too_long, "cus_\u00e9"] + [
            f"cus_{n}" for n in range(20)
        ]:
            response = http.get("/async", headers={"X-Customer-Id": value.encode()})
            assert response.status_code == 200
            customers.append(response.json()["customer"])
        kept = len(middleware_of(app)._values)
    assert customers[:6] == ["cus_1", "cus_1", "", too_long, too_long, "cus_\u00e9"]
    assert 1 <= kept <= 8
    events = sent(client)
    # The empty header is an invalid customer (issue 24), and the over-long
    # id is refused both times: remembered values are still checked values.
    assert [customer for _, customer, _ in events] == (
        ["cus_1", "cus_1", "cus_\u00e9"] + [f"cus_{n}" for n in range(20)]
    )
    stats = client.stats()
    assert stats["dropped_invalid"] == 3
    assert stats["dropped_missing_customer"] == 0


def test_the_customer_also_goes_into_baggage_when_baggage_is_written() -> None:
    from opentelemetry import baggage

    # A baggage key given on purpose is written, SDK or not.
    meterstream.configure(exporter="memory", otel_baggage_key="app.customer")
    app = make_app(customer_resolver=BY_HEADER)

    @app.get("/baggage")
    async def read_baggage() -> dict[str, Any]:
        return {"baggage": baggage.get_baggage("app.customer")}

    with TestClient(app) as http:
        answers = [
            http.get("/baggage", headers={"X-Customer-Id": "cus_7"}).json(),
            http.get("/baggage").json(),
        ]
    assert answers == [{"baggage": "cus_7"}, {"baggage": None}]


def test_a_plain_starlette_app_works_too(client: meterstream.MeterClient) -> None:
    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse(await asearch("q"))

    app = Starlette(
        routes=[Route("/", endpoint)],
        middleware=[Middleware(MeterstreamMiddleware, customer_resolver=BY_HEADER)],
    )
    with TestClient(app) as http:
        assert http.get("/", headers={"X-Customer-Id": "cus_st"}).json()["customer"] == "cus_st"
    assert sent(client) == [("ai_search_api", "cus_st", "1")]


class HeaderAuth(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> Optional[tuple[AuthCredentials, Any]]:
        name = conn.headers.get("X-User")
        if not name:
            return None
        user = SimpleUser(name)
        user.account = type("Account", (), {"stripe_id": f"cus_{name}"})()  # type: ignore[attr-defined]
        return AuthCredentials(["authenticated"]), user


def test_user_attribute_reads_the_authenticated_scope_user(
    client: meterstream.MeterClient,
) -> None:
    async def endpoint(request: Request) -> JSONResponse:
        return JSONResponse(await asearch("q"))

    app = Starlette(
        routes=[Route("/", endpoint)],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=HeaderAuth()),
            Middleware(
                MeterstreamMiddleware, customer_resolver=user_attribute("account.stripe_id")
            ),
        ],
    )
    with TestClient(app) as http:
        assert http.get("/", headers={"X-User": "zoe"}).json()["customer"] == "cus_zoe"
        assert http.get("/").json()["customer"] is None  # UnauthenticatedUser
    assert sent(client) == [("ai_search_api", "cus_zoe", "1")]
    assert client.stats()["dropped_missing_customer"] == 1


def test_a_raising_resolver_is_logged_counted_and_never_a_500(
    client: meterstream.MeterClient, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(request: Request) -> str:
        return request.headers["X-Missing"]

    app = make_app(customer_resolver=broken, request_event="api_requests")
    with TestClient(app) as http, caplog.at_level(logging.ERROR, logger="meterstream"):
        responses = [http.get("/async") for _ in range(3)]
        assert middleware_of(app).resolver_errors == 3
    assert [r.status_code for r in responses] == [200] * 3
    assert [r.json()["customer"] for r in responses] == [None] * 3
    assert sum("x-missing" in r.getMessage().lower() for r in caplog.records) == 1
    assert sent(client) == []


def test_a_dotted_path_resolver_and_wrong_options_fail_at_construction() -> None:
    middleware = MeterstreamMiddleware(
        make_app(), customer_resolver="meterstream.integrations.asgi.header"
    )
    assert middleware.meter.resolver is header
    with pytest.raises(meterstream.ConfigurationError, match="request_event"):
        MeterstreamMiddleware(make_app(), request_event="")
    with pytest.raises(meterstream.ConfigurationError, match="request_event_statuses"):
        MeterstreamMiddleware(make_app(), request_event="x", request_event_statuses=["7xx"])


# -- request events ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "billed"), [(None, [200, 201]), (["2xx", 404], [200, 201, 404])]
)
def test_request_event_bills_only_the_configured_statuses(
    client: meterstream.MeterClient, statuses: Any, billed: list[int]
) -> None:
    app = make_app(
        customer_resolver=BY_HEADER, request_event="api_requests", request_event_statuses=statuses
    )
    with TestClient(app) as http:
        for code in (200, 201, 302, 404, 500):
            http.get(f"/status/{code}", headers={"X-Customer-Id": f"cus_{code}"})
    assert sorted(sent(client)) == [("api_requests", f"cus_{s}", "1") for s in billed]


def test_request_event_without_customer_follows_the_policy_and_keeps_the_response() -> None:
    client = meterstream.configure(exporter="memory", on_missing_customer="raise")
    app = make_app(customer_resolver=BY_HEADER, request_event="api_requests")
    with TestClient(app) as http:
        assert http.get("/status/200").status_code == 200
        assert middleware_of(app).meter.request_event_errors == 1
    assert sent(client) == []


def test_a_streaming_response_is_billed_when_its_last_body_message_is_sent(
    client: meterstream.MeterClient,
) -> None:
    with TestClient(make_app(customer_resolver=BY_HEADER, request_event="api_requests")) as http:
        body = http.get("/stream", headers={"X-Customer-Id": "cus_s"}).content
    assert body == b"0:cus_s;1:cus_s;2:cus_s;"
    assert sent(client) == [("api_requests", "cus_s", "1")]


def run_raw(app: Any, scope: dict[str, Any], receive_messages: list[dict[str, Any]]) -> list[Any]:
    """Drive an ASGI app by hand; return what it sent."""
    out: list[Any] = []
    incoming = list(receive_messages)

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()  # pragma: no cover - never answered
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

    asyncio.run(app(scope, receive, send))
    return out


HTTP_SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
    "headers": [(b"x-customer-id", b"cus_raw")],
}


def test_a_stream_is_billed_only_after_more_body_false_and_not_if_it_breaks(
    client: meterstream.MeterClient,
) -> None:
    counts: list[int] = []

    def recorded() -> int:
        client.flush(5)
        return len(client.exporter.events)  # type: ignore[attr-defined]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(3):
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            counts.append(recorded())
        if scope["path"] == "/broken":
            raise ConnectionResetError("client went away")
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        counts.append(recorded())

    middleware = MeterstreamMiddleware(
        app, customer_resolver=BY_HEADER, request_event="api_requests"
    )
    run_raw(middleware, dict(HTTP_SCOPE), [])
    assert counts == [0, 0, 0, 1]
    with pytest.raises(ConnectionResetError):
        run_raw(middleware, {**HTTP_SCOPE, "path": "/broken"}, [])
    assert sent(client) == [("api_requests", "cus_raw", "1")]


def test_flush_each_request_delivers_before_the_request_ends(
    client: meterstream.MeterClient,
) -> None:
    app = make_app(customer_resolver=BY_HEADER, flush_each_request=True)
    with TestClient(app) as http:
        http.get("/sync", headers={"X-Customer-Id": "cus_f"})
        assert len(client.exporter.events) == 1  # type: ignore[attr-defined]


# -- websockets and lifespan ---------------------------------------------------------


def test_websockets_pass_through_with_the_customer_and_are_not_billed(
    client: meterstream.MeterClient,
) -> None:
    app = make_app(customer_resolver=BY_HEADER, request_event="api_requests")
    with (
        TestClient(app) as http,
        http.websocket_connect("/ws", headers={"X-Customer-Id": "cus_ws"}) as ws,
    ):
        assert ws.receive_json() == {"customer": "cus_ws"}
    assert sent(client) == []


def test_websockets_pass_through_untouched_without_a_resolver() -> None:
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.scope.get("meterstream", "untouched"))
        await websocket.close()

    app = Starlette(
        routes=[WebSocketRoute("/ws", ws)], middleware=[Middleware(MeterstreamMiddleware)]
    )
    with TestClient(app) as http, http.websocket_connect("/ws") as conn:
        assert conn.receive_text() == "untouched"


def test_lifespan_passes_through_and_shutdown_flushes(client: meterstream.MeterClient) -> None:
    calls: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        calls.append("startup")
        yield
        calls.append("shutdown")
        meterstream.record("shutdown_report", customer="cus_l")

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(MeterstreamMiddleware, customer_resolver=BY_HEADER)

    @app.get("/")
    def index() -> dict[str, Any]:
        return search("q")

    with TestClient(app) as http:
        assert calls == ["startup"]
        http.get("/", headers={"X-Customer-Id": "cus_l"})
        assert client.exporter.events == []  # type: ignore[attr-defined]  # flush_interval=3600
    assert calls == ["startup", "shutdown"]
    names = sorted(e["event_name"] for e in client.exporter.events)  # type: ignore[attr-defined]
    assert names == ["ai_search_api", "shutdown_report"]  # flushed, with no flush() of ours


def test_shutdown_flushes_even_when_the_app_does_not_speak_lifespan(
    client: meterstream.MeterClient,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()  # startup
        meterstream.record("api_calls", customer="cus_x")
        await receive()  # shutdown
        raise RuntimeError("lifespan not supported")

    with pytest.raises(RuntimeError):
        run_raw(
            MeterstreamMiddleware(app),
            {"type": "lifespan", "asgi": {"version": "3.0"}},
            [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}],
        )
    assert len(client.exporter.events) == 1  # type: ignore[attr-defined]


# -- FastAPI dependencies ------------------------------------------------------------


def dependency_app(**options: Any) -> FastAPI:
    app = FastAPI()
    app.add_middleware(MeterstreamMiddleware, request_event="api_requests", **options)

    @app.get(
        "/accounts/{account_id}/search",
        dependencies=[Depends(set_customer(path_param("account_id")))],
    )
    def by_path(who: Optional[str] = Depends(current_customer)) -> dict[str, Any]:
        # A sync endpoint, run in the thread pool: it must still see the customer.
        return {"dependency": who, **search("q")}

    @app.get("/header/search")
    async def by_header(
        who: Optional[str] = Depends(set_customer(header("X-Account"), required=True)),
    ) -> dict[str, Any]:
        return {"dependency": who, **(await asearch("q"))}

    return app


def test_set_customer_dependency_reaches_sync_and_async_endpoints_and_the_request_event(
    client: meterstream.MeterClient,
) -> None:
    with TestClient(dependency_app(customer_resolver=BY_HEADER)) as http:
        by_path = http.get("/accounts/cus_p/search", headers={"X-Customer-Id": "cus_mw"}).json()
        by_header = http.get("/header/search", headers={"X-Account": "cus_h"}).json()
        missing = http.get("/header/search")
    assert by_path == {"dependency": "cus_p", "query": "q", "customer": "cus_p"}
    assert by_header == {"dependency": "cus_h", "query": "q", "customer": "cus_h"}
    assert missing.status_code == 401
    assert sorted(sent(client)) == [
        ("ai_search_api", "cus_h", "1"),
        ("ai_search_api", "cus_p", "1"),
        ("api_requests", "cus_h", "1"),
        ("api_requests", "cus_p", "1"),
    ]


def test_set_customer_works_without_the_middleware(client: meterstream.MeterClient) -> None:
    app = FastAPI()

    @app.get("/{account_id}")
    def endpoint(who: Optional[str] = Depends(set_customer(path_param("account_id")))) -> Any:
        return search("q")

    with TestClient(app) as http:
        assert http.get("/cus_n").json()["customer"] == "cus_n"
        assert http.get("/cus_m").json()["customer"] == "cus_m"
    assert meterstream.current_customer() is None
    assert sorted(sent(client)) == [
        ("ai_search_api", "cus_m", "1"),
        ("ai_search_api", "cus_n", "1"),
    ]


def test_set_customer_refuses_no_resolver() -> None:
    with pytest.raises(meterstream.ConfigurationError):
        set_customer(None)


@pytest.fixture(autouse=True)
def _no_leak() -> Iterator[None]:
    yield
    assert meterstream.current_customer() is None


@pytest.mark.parametrize("value", [b"", b"   "])
@pytest.mark.parametrize("path", ["/async", "/sync"])
def test_an_empty_customer_header_is_an_invalid_customer_not_a_missing_one(
    value: bytes, path: str
) -> None:
    # Issue 24: an empty X-Customer-Id silently lost billing as "no customer".
    client = meterstream.configure(exporter="memory", flush_interval=3600)
    app = make_app(customer_resolver=BY_HEADER)
    with TestClient(app) as http:
        assert http.get(path, headers={"X-Customer-Id": value}).status_code == 200
    assert sent(client) == []
    stats = client.stats()
    assert stats["dropped_invalid"] == 1 and stats["dropped_missing_customer"] == 0, stats
