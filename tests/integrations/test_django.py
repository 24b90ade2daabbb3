"""Django: the app config, the system check, MeterstreamMiddleware (sync and async)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="meterstream-tests",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["meterstream.integrations.django"],
        MIDDLEWARE=[
            f"{__name__}.fake_auth",
            "meterstream.integrations.django.MeterstreamMiddleware",
        ],
        DATABASES={},
        USE_TZ=True,
        METERSTREAM={},
    )
    django.setup()

from asgiref.sync import iscoroutinefunction  # noqa: E402
from django.apps import apps  # noqa: E402
from django.core import checks  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.management.base import SystemCheckError  # noqa: E402
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

import meterstream  # noqa: E402
from helpers.recorded import sent  # noqa: E402
from meterstream.integrations.django import (  # noqa: E402
    MeterstreamMiddleware,
    configure_from_settings,
    header,
    user_attribute,
)
from meterstream.integrations.django.apps import MeterstreamConfig  # noqa: E402

# -- the test project -------------------------------------------------------------


def fake_auth(get_response: Any) -> Any:
    """Stands in for AuthenticationMiddleware: a user from the X-User header."""

    def middleware(request: Any) -> Any:
        name = request.headers.get("X-User")
        if name:
            profile = SimpleNamespace(stripe_customer_id=f"cus_{name}")
            request.user = SimpleNamespace(is_authenticated=True, profile=profile)
        else:
            request.user = SimpleNamespace(is_authenticated=False)
        return get_response(request)

    return middleware


@meterstream.meter("ai_search_api")
def search_view(request: Any) -> Any:
    return JsonResponse({"customer": meterstream.current_customer()})


@meterstream.meter("ai_search_api")
async def async_search_view(request: Any) -> Any:
    await asyncio.sleep(0)
    return JsonResponse({"customer": meterstream.current_customer()})


def status_view(request: Any, status: int) -> Any:
    return HttpResponse("x", status=status)


def crash_view(request: Any) -> Any:
    raise RuntimeError("boom")


@meterstream.meter("chunks")
def make_chunk(n: int) -> bytes:
    return f"{n}:{meterstream.current_customer()};".encode()


def stream_view(request: Any) -> Any:
    return StreamingHttpResponse(make_chunk(n) for n in range(3))


async def async_stream_view(request: Any) -> Any:
    async def body() -> AsyncIterator[bytes]:
        for n in range(3):
            await asyncio.sleep(0)
            yield make_chunk(n)

    return StreamingHttpResponse(body())


urlpatterns = [
    path("search", search_view),
    path("asearch", async_search_view),
    path("status/<int:status>", status_view),
    path("crash", crash_view),
    path("stream", stream_view),
    path("astream", async_stream_view),
]

HEADER = {"customer_resolver": header("X-Customer-Id")}


@pytest.fixture(autouse=True)
def _header_resolver() -> Iterator[None]:
    with override_settings(METERSTREAM=HEADER):
        yield


def arun(coro: Any) -> Any:
    return asyncio.run(coro)


# -- the middleware -----------------------------------------------------------------


def test_a_sync_view_sees_the_requests_customer_and_bills_it(
    client: meterstream.MeterClient,
) -> None:
    http = Client()
    for n in range(4):
        response = http.get("/search", HTTP_X_CUSTOMER_ID=f"cus_{n % 2}")
        assert response.json() == {"customer": f"cus_{n % 2}"}
    assert (
        sorted(sent(client))
        == [("ai_search_api", "cus_0", "1")] * 2 + [("ai_search_api", "cus_1", "1")] * 2
    )
    assert meterstream.current_customer() is None


def test_an_async_view_under_the_async_client_sees_the_requests_customer(
    client: meterstream.MeterClient,
) -> None:
    async def go() -> list[Any]:
        http = AsyncClient()
        return [
            (await http.get("/asearch", headers={"X-Customer-Id": f"cus_{n}"})).json()
            for n in range(3)
        ]

    assert arun(go()) == [{"customer": f"cus_{n}"} for n in range(3)]
    assert sorted(sent(client)) == [("ai_search_api", f"cus_{n}", "1") for n in range(3)]


def test_the_middleware_is_sync_and_async_capable() -> None:
    assert MeterstreamMiddleware.sync_capable and MeterstreamMiddleware.async_capable

    async def async_next(request: Any) -> Any:
        return HttpResponse()

    assert iscoroutinefunction(MeterstreamMiddleware(async_next))
    assert not iscoroutinefunction(MeterstreamMiddleware(lambda request: HttpResponse()))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_user_attribute_resolves_authenticated_users_only(
    client: meterstream.MeterClient, mode: str
) -> None:
    resolver = user_attribute("profile.stripe_customer_id")
    with override_settings(METERSTREAM={"customer_resolver": resolver}):
        if mode == "sync":
            http = Client()
            seen = [http.get("/search", HTTP_X_USER=u).json() for u in ("ann", "")]
        else:

            async def go() -> list[Any]:
                http = AsyncClient()
                return [
                    (await http.get("/asearch", headers={"X-User": u})).json() for u in ("ann", "")
                ]

            seen = arun(go())
    assert seen == [{"customer": "cus_ann"}, {"customer": None}]
    assert sent(client) == [("ai_search_api", "cus_ann", "1")]
    assert client.stats()["dropped_missing_customer"] == 1


def test_a_request_without_customer_gets_its_normal_response(
    client: meterstream.MeterClient,
) -> None:
    response = Client().get("/search")
    assert response.status_code == 200
    assert response.json() == {"customer": None}
    assert sent(client) == []
    assert client.stats()["dropped_missing_customer"] == 1


def test_a_raising_resolver_is_logged_counted_and_never_a_500(
    client: meterstream.MeterClient, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(request: Any) -> str:
        raise KeyError("no such api key")

    http = Client()
    with override_settings(METERSTREAM={"customer_resolver": broken}):
        with caplog.at_level(logging.ERROR, logger="meterstream"):
            responses = [http.get("/search") for _ in range(3)]
        middleware = _meterstream_middleware(http)
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert middleware.resolver_errors == 3
    assert sum("no such api key" in r.getMessage() for r in caplog.records) == 1


def _meterstream_middleware(http: Client) -> MeterstreamMiddleware:
    """The middleware instance the test client's handler built."""
    handler = http.handler
    chain: Any = handler._middleware_chain
    seen = set()
    stack = [chain]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None:
            continue
        seen.add(id(obj))
        if isinstance(obj, MeterstreamMiddleware):
            return obj
        for name in ("get_response", "__wrapped__"):
            stack.append(getattr(obj, name, None))
        for cell in getattr(obj, "__closure__", None) or ():
            try:
                stack.append(cell.cell_contents)
            except ValueError:
                pass
    raise AssertionError("MeterstreamMiddleware not found in the chain")


@pytest.mark.parametrize(
    ("statuses", "billed"),
    [(None, [200, 201]), (["2xx", 404], [200, 201, 404]), ([201], [201])],
)
def test_request_event_bills_only_the_configured_statuses(
    client: meterstream.MeterClient, statuses: Any, billed: list[int]
) -> None:
    options = {**HEADER, "request_event": "api_requests", "request_event_statuses": statuses}
    http = Client(raise_request_exception=False)
    with override_settings(METERSTREAM=options):
        for status in (200, 201, 302, 404, 500):
            http.get(f"/status/{status}", HTTP_X_CUSTOMER_ID=f"cus_{status}")
        assert http.get("/crash", HTTP_X_CUSTOMER_ID="cus_crash").status_code == 500
    assert sorted(sent(client)) == [("api_requests", f"cus_{s}", "1") for s in billed]


def test_request_event_without_customer_follows_the_policy_and_keeps_the_response(
    caplog: pytest.LogCaptureFixture,
) -> None:
    meterstream.configure(exporter="memory", flush_interval=3600, on_missing_customer="raise")
    http = Client()
    with override_settings(METERSTREAM={**HEADER, "request_event": "api_requests"}):
        with caplog.at_level(logging.WARNING, logger="meterstream"):
            response = http.get("/status/200")
        middleware = _meterstream_middleware(http)
    assert response.status_code == 200
    assert middleware.meter.request_event_errors == 1
    assert any("could not record request event" in r.getMessage() for r in caplog.records)
    assert sent(meterstream.get_client()) == []


def test_a_streaming_response_is_made_with_the_customer_and_billed_once_complete(
    client: meterstream.MeterClient,
) -> None:
    http = Client()
    with override_settings(METERSTREAM={**HEADER, "request_event": "api_requests"}):
        response = http.get("/stream", HTTP_X_CUSTOMER_ID="cus_s")
    assert sent(client) == []  # nothing made yet
    assert b"".join(response.streaming_content) == b"0:cus_s;1:cus_s;2:cus_s;"
    assert sorted(sent(client)) == [("api_requests", "cus_s", "1")] + [("chunks", "cus_s", "1")] * 3


def test_an_async_streaming_response_under_asgi_is_billed_once_complete(
    client: meterstream.MeterClient,
) -> None:
    async def go() -> bytes:
        http = AsyncClient()
        response = await http.get("/astream", headers={"X-Customer-Id": "cus_a"})
        return b"".join([chunk async for chunk in response.streaming_content])

    with override_settings(METERSTREAM={**HEADER, "request_event": "api_requests"}):
        body = arun(go())
    assert body == b"0:cus_a;1:cus_a;2:cus_a;"
    assert sorted(sent(client)) == [("api_requests", "cus_a", "1")] + [("chunks", "cus_a", "1")] * 3


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_flush_each_request_delivers_before_the_response_returns(
    client: meterstream.MeterClient, mode: str
) -> None:
    options = {**HEADER, "request_event": "api_requests", "flush_each_request": True}
    with override_settings(METERSTREAM=options):
        if mode == "sync":
            Client().get("/search", HTTP_X_CUSTOMER_ID="cus_f")
        else:
            arun(AsyncClient().get("/asearch", headers={"X-Customer-Id": "cus_f"}))
    names = sorted(e["event_name"] for e in client.exporter.events)  # type: ignore[attr-defined]
    assert names == ["ai_search_api", "api_requests"]  # no flush() of ours


def test_wrong_middleware_options_fail_when_the_chain_is_built() -> None:
    with (
        override_settings(METERSTREAM={"request_event": ""}),
        pytest.raises(ImproperlyConfigured, match=r"METERSTREAM\['request_event'\]"),
    ):
        MeterstreamMiddleware(lambda request: HttpResponse())


# -- settings, app config and system checks ---------------------------------------


def test_the_app_config_is_found_from_the_package_name() -> None:
    assert isinstance(apps.get_app_config("meterstream"), MeterstreamConfig)


def test_configure_from_settings_configures_the_default_client() -> None:
    with override_settings(METERSTREAM={**HEADER, "exporter": "memory", "batch_size": 7}):
        assert configure_from_settings() is None
    assert meterstream.get_client().settings.batch_size == 7


def test_configure_from_settings_logs_and_returns_a_wrong_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = meterstream.get_client()
    with override_settings(METERSTREAM={"batch_size": 500}):
        error = configure_from_settings()
    assert isinstance(error, meterstream.ConfigurationError)
    assert "batch_size" in caplog.text
    assert meterstream.get_client() is before


def meterstream_messages() -> list[checks.CheckMessage]:
    return [m for m in checks.run_checks() if m.id and m.id.startswith("meterstream.")]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"api_kye": "sk_test_x"}, "unknown setting 'api_kye'; did you mean 'api_key'?"),
        ({"batch_size": 500}, "batch_size: must be between 1 and 100, got 500"),
        ({"customer_resolver": "nowhere_xyz.resolve"}, "cannot import 'nowhere_xyz.resolve'"),
        ({"request_event_statuses": ["9xx"]}, "request_event_statuses"),
        ("sk_test_x", "METERSTREAM: expected a dict of settings"),
    ],
)
def test_a_wrong_setting_is_a_system_check_error(config: Any, message: str) -> None:
    with override_settings(METERSTREAM=config):
        found = meterstream_messages()
        assert [m.id for m in found] == ["meterstream.E001"]
        assert message in found[0].msg
        assert found[0].level == checks.ERROR
        with pytest.raises(SystemCheckError, match="meterstream.E001"):
            call_command("check")


def test_valid_settings_pass_the_system_check() -> None:
    with override_settings(METERSTREAM={**HEADER, "exporter": "memory"}):
        assert meterstream_messages() == []


def test_the_middleware_without_a_resolver_is_a_system_check_warning() -> None:
    with override_settings(METERSTREAM={"request_event": "api_requests"}):
        assert [m.id for m in meterstream_messages()] == ["meterstream.W001"]
