"""Settings that cannot work fail at ``configure()``, naming the setting."""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

import pytest

import meterstream

SECRET_PART = "4eC39HqLyjWDarjtT1zdp7dc"


@pytest.mark.parametrize("name", ["api_base", "stream_base"])
@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:99999",
        "http://localhost:0",
        "http://localhost:port",
        "https://localhost:-1",
        "http://[::1",
        "http://[::1]x:80",
        "http://::1]:80",
        "http://",
        "https://",
        "http://:8080",
        "http:///path",
        "http://user@:80",
        "http://local host",
        "http://local\x00host",
        "https://api.stripe.com/v1?x=1",
        "https://api.stripe.com/#frag",
        "ftp://api.stripe.com",
    ],
)
def test_a_url_that_cannot_be_used_is_refused_naming_the_setting(name: str, url: str) -> None:
    with pytest.raises(meterstream.ConfigurationError) as info:
        meterstream.configure(exporter="memory", **{name: url})
    assert str(info.value).startswith(f"{name}:")
    assert type(info.value) is meterstream.ConfigurationError


def test_a_bad_url_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METERSTREAM_STREAM_BASE", "http://127.0.0.1:70000")
    with pytest.raises(meterstream.ConfigurationError, match=r"^METERSTREAM_STREAM_BASE: .*port"):
        meterstream.MeterClient(exporter="memory")


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("http://127.0.0.1:12111", "http://127.0.0.1:12111"),
        ("http://[::1]:12111/", "http://[::1]:12111"),
        ("https://api.stripe.com", "https://api.stripe.com"),
        ("https://proxy.example.com/stripe/", "https://proxy.example.com/stripe"),
        ("HTTPS://API.stripe.com:443", "HTTPS://API.stripe.com:443"),
        ("http://localhost:65535", "http://localhost:65535"),
    ],
)
def test_good_urls_are_accepted(url: str, kept: str) -> None:
    client = meterstream.MeterClient(exporter="memory", api_base=url, stream_base=url)
    assert client.settings.api_base == kept
    assert client.settings.stream_base == kept
    client.shutdown(0)


@pytest.mark.parametrize(
    "key",
    [
        "sk_test_" + SECRET_PART + "é",
        "sk_test_" + SECRET_PART + "\u200b",
        "sk_test_" + SECRET_PART[:10] + " " + SECRET_PART[10:],
        "sk_test_" + SECRET_PART[:5] + "\n" + SECRET_PART[5:],
        "sk_test_" + SECRET_PART[:5] + "\x7f",
    ],
)
def test_an_api_key_that_cannot_go_in_a_header_is_refused_without_showing_it(key: str) -> None:
    with pytest.raises(meterstream.ConfigurationError) as info:
        meterstream.configure(api_key=key, exporter="memory")
    message = str(info.value)
    assert message.startswith("api_key:")
    assert SECRET_PART[:5] not in message
    assert SECRET_PART[-5:] not in message


def test_an_api_key_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_" + SECRET_PART + "ü")
    with pytest.raises(meterstream.ConfigurationError, match="^STRIPE_API_KEY: ") as info:
        meterstream.MeterClient()
    assert SECRET_PART not in str(info.value)
    monkeypatch.setenv("METERSTREAM_API_KEY", "sk_test_" + SECRET_PART + "ü")
    with pytest.raises(meterstream.ConfigurationError, match="^METERSTREAM_API_KEY: "):
        meterstream.MeterClient()


@pytest.fixture
def hooks_package(monkeypatch: pytest.MonkeyPatch) -> None:
    package = types.ModuleType("meterstream_hooks_pkg")
    package.__path__ = []
    handlers = types.ModuleType("meterstream_hooks_pkg.handlers")
    handlers.cb = lambda events, error: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "meterstream_hooks_pkg", package)
    monkeypatch.setitem(sys.modules, "meterstream_hooks_pkg.handlers", handlers)


@pytest.mark.parametrize(
    "path", [".handlers.cb", ".handlers:cb", "..cb", ":cb", "meterstream_hooks_pkg.handlers:"]
)
def test_an_on_delivery_error_path_that_cannot_be_imported_names_the_setting(
    hooks_package: None, path: str
) -> None:
    with pytest.raises(meterstream.ConfigurationError) as info:
        meterstream.configure(exporter="memory", on_delivery_error=path)
    assert str(info.value).startswith("on_delivery_error:")
    assert repr(path) in str(info.value)


def test_a_relative_path_says_to_give_the_full_module_path(hooks_package: None) -> None:
    with pytest.raises(meterstream.ConfigurationError, match="relative"):
        meterstream.configure(exporter="memory", on_delivery_error=".handlers.cb")


def test_an_absolute_path_in_a_package_still_imports(hooks_package: None) -> None:
    client = meterstream.MeterClient(
        exporter="memory", on_delivery_error="meterstream_hooks_pkg.handlers:cb"
    )
    assert client.settings.on_delivery_error is sys.modules["meterstream_hooks_pkg.handlers"].cb  # type: ignore[attr-defined]
    client.shutdown(0)


needs_no_h2 = pytest.mark.skipif(
    importlib.util.find_spec("h2") is not None, reason="h2 is installed here"
)


@needs_no_h2
@pytest.mark.parametrize("spelling", [True, "true"])
def test_http2_without_its_extra_names_the_extra(spelling: Any) -> None:
    with pytest.raises(meterstream.ConfigurationError) as info:
        meterstream.configure(api_key="sk_test_x", http2=spelling)
    message = str(info.value)
    assert message.startswith("http2:")
    assert "meterstream[http2]" in message


@needs_no_h2
def test_http2_without_its_extra_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERSTREAM_HTTP2", "1")
    with pytest.raises(meterstream.ConfigurationError, match=r"^METERSTREAM_HTTP2: .*\[http2\]"):
        meterstream.MeterClient(api_key="sk_test_x")


def test_http2_is_only_checked_for_the_stripe_exporter() -> None:
    client = meterstream.MeterClient(exporter="memory", http2=True)
    assert client.settings.http2 is True
    client.shutdown(0)
