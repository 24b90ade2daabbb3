"""The framework-neutral parts: options, resolvers, the missing-extra ImportError."""

from __future__ import annotations

import importlib
import logging
import sys
from types import SimpleNamespace
from typing import Any

import pytest

import meterstream
from helpers.recorded import sent
from meterstream.integrations._common import (
    IntegrationOptions,
    RequestMeter,
    header,
    iterate_as,
    load_resolver,
    parse_options,
    parse_statuses,
    split_settings,
    user_attribute,
)


def request_with(headers: dict[str, str]) -> Any:
    lowered = {k.lower(): v for k, v in headers.items()}
    return SimpleNamespace(headers=SimpleNamespace(get=lambda name: lowered.get(name.lower())))


def resolve_to_cus_9(request: Any) -> str:
    return "cus_9"


def test_header_resolver_reads_the_header_and_gives_a_blank_one_as_it_came() -> None:
    resolve = header("X-Customer-Id")
    assert resolve(request_with({"x-customer-id": " cus_1 "})) == "cus_1"
    # Sent but blank: a customer id to refuse, naming it (issue 24); absent: none.
    assert resolve(request_with({"X-Customer-Id": "  "})) == "  "
    assert resolve(request_with({"X-Customer-Id": ""})) == ""
    assert resolve(request_with({})) is None


def test_user_attribute_follows_the_path_and_anonymous_users_have_no_customer() -> None:
    resolve = user_attribute("profile.stripe_customer_id", lambda request: request.user)
    user = SimpleNamespace(
        is_authenticated=True, profile=SimpleNamespace(stripe_customer_id="cus_7")
    )
    assert resolve(SimpleNamespace(user=user)) == "cus_7"
    anonymous = SimpleNamespace(is_authenticated=False, profile=user.profile)
    assert resolve(SimpleNamespace(user=anonymous)) is None
    assert resolve(SimpleNamespace(user=None)) is None
    no_profile = SimpleNamespace(is_authenticated=True, profile=None)
    assert resolve(SimpleNamespace(user=no_profile)) is None


@pytest.mark.parametrize("path", ["", ".x", "a..b", None])
def test_user_attribute_refuses_a_malformed_path(path: Any) -> None:
    with pytest.raises(meterstream.ConfigurationError, match="dotted attribute path"):
        user_attribute(path, lambda request: None)


def test_a_resolver_can_be_a_dotted_path() -> None:
    resolver = load_resolver(f"{__name__}.resolve_to_cus_9", "customer_resolver")
    assert resolver is resolve_to_cus_9
    with pytest.raises(meterstream.ConfigurationError, match="customer_resolver: cannot import"):
        load_resolver("no_such_module_xyz.resolve", "customer_resolver")
    with pytest.raises(meterstream.ConfigurationError, match="expected a callable"):
        load_resolver(42, "customer_resolver")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2xx", set(range(200, 300))),
        ([200, 201], {200, 201}),
        (["2xx", 404], set(range(200, 300)) | {404}),
        (range(200, 204), {200, 201, 202, 203}),
        ("204", {204}),
    ],
)
def test_status_filters_accept_codes_classes_and_ranges(raw: Any, expected: set[int]) -> None:
    assert parse_statuses(raw, "statuses") == expected


@pytest.mark.parametrize("raw", ["6xx", [99], [True], [], "ok", 3.5])
def test_status_filters_refuse_anything_else(raw: Any) -> None:
    with pytest.raises(meterstream.ConfigurationError, match="statuses"):
        parse_statuses(raw, "statuses")


def test_options_are_validated_naming_the_option() -> None:
    options = parse_options(
        {"request_event": "api_requests", "flush_each_request": "true", "flush_timeout": 1},
        "METERSTREAM",
    )
    assert options.request_event == "api_requests"
    assert options.flush_each_request is True
    assert options.request_event_statuses == frozenset(range(200, 300))
    with pytest.raises(meterstream.ConfigurationError, match=r"METERSTREAM\['request_event'\]"):
        parse_options({"request_event": "x" * 101}, "METERSTREAM")
    with pytest.raises(meterstream.ConfigurationError, match=r"\['flush_timeout'\]"):
        parse_options({"flush_timeout": -1}, "METERSTREAM")


def test_split_settings_separates_core_settings_and_hints_at_typos() -> None:
    core, options = split_settings(
        {"api_key": "sk_test_x", "request_event": "api_requests"}, "METERSTREAM"
    )
    assert core == {"api_key": "sk_test_x"}
    assert options == {"request_event": "api_requests"}
    with pytest.raises(meterstream.ConfigurationError, match="did you mean 'request_event'"):
        split_settings({"request_evnt": "x"}, "METERSTREAM")
    with pytest.raises(meterstream.ConfigurationError, match="did you mean 'api_key'"):
        split_settings({"api_kye": "x"}, "METERSTREAM")
    with pytest.raises(meterstream.ConfigurationError, match="expected a dict"):
        split_settings(["api_key"], "METERSTREAM")


def test_a_raising_resolver_is_counted_logged_once_and_yields_no_customer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(request: Any) -> str:
        raise RuntimeError("database is down")

    meter = RequestMeter(IntegrationOptions(customer_resolver=broken))
    with caplog.at_level(logging.ERROR, logger="meterstream"):
        assert meter.resolve(object()) is None
        assert meter.resolve(object()) is None
    assert meter.resolver_errors == 2
    lines = [r for r in caplog.records if "database is down" in r.getMessage()]
    assert len(lines) == 1  # rate-limited


def test_a_resolver_returning_a_non_string_is_a_resolver_error() -> None:
    meter = RequestMeter(IntegrationOptions(customer_resolver=lambda request: 42))
    assert meter.resolve(object()) is None
    assert meter.resolver_errors == 1


def test_iterate_as_sets_the_customer_per_chunk_only_and_completes_once(
    client: meterstream.MeterClient,
) -> None:
    seen: list[Any] = []
    done: list[int] = []

    def body() -> Any:
        for n in range(3):
            seen.append(meterstream.current_customer())
            yield n

    out = []
    for chunk in iterate_as("cus_s", body(), lambda: done.append(1)):
        out.append((chunk, meterstream.current_customer()))
    assert out == [(0, None), (1, None), (2, None)]
    assert seen == ["cus_s"] * 3
    assert done == [1]
    closed = iterate_as("cus_s", body(), lambda: done.append(2))
    next(closed)
    closed.close()
    assert done == [1]  # an abandoned stream is not complete
    assert sent(client) == []


MODULES = {
    "meterstream.integrations.django": (
        "django",
        "meterstream.integrations.django needs Django: pip install 'meterstream[django]'",
    ),
    "meterstream.integrations.asgi": (
        "starlette",
        "meterstream.integrations.asgi needs Starlette: pip install 'meterstream[fastapi]'",
    ),
    "meterstream.integrations.flask": (
        "flask",
        "meterstream.integrations.flask needs Flask: pip install 'meterstream[flask]'",
    ),
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_missing_extra_fails_at_import_with_the_command_to_run(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    framework, message = MODULES[module]
    for name in list(sys.modules):
        if name == framework or name.startswith(framework + "."):
            monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]
        if name == module or name.startswith(module + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, framework, None)  # type: ignore[arg-type]
    with pytest.raises(ImportError) as info:
        importlib.import_module(module)
    assert str(info.value) == message
