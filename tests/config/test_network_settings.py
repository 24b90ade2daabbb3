"""The proxy and ca_bundle settings, and how the environment is read for them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from meterstream import ConfigurationError
from meterstream._config.network import redact_url
from meterstream._config.settings import Settings
from meterstream._exporters.network import ca_source, proxy_for, ssl_context

STRIPE = "https://meter-events.stripe.com"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"HTTPS_PROXY": "http://p:3128"}, "http://p:3128"),
        ({"https_proxy": "http://lower:1"}, "http://lower:1"),
        ({"HTTP_PROXY": "http://p:3128"}, None),  # http:// URLs only
        ({"ALL_PROXY": "http://all:1"}, "http://all:1"),
        ({"ALL_PROXY": "http://all:1", "HTTPS_PROXY": "http://s:1"}, "http://s:1"),
        ({"HTTPS_PROXY": "p.internal:3128"}, "http://p.internal:3128"),  # scheme assumed
        ({"HTTPS_PROXY": "https://secure:443"}, "https://secure:443"),
    ],
)
def test_the_proxy_is_taken_from_the_environment_by_scheme(
    environ: dict[str, str], expected: Optional[str]
) -> None:
    route = proxy_for(STRIPE, None, environ)
    assert (route.url if route else None) == expected


@pytest.mark.parametrize(
    ("target", "no_proxy", "bypassed"),
    [
        (STRIPE, "*", True),
        (STRIPE, "stripe.com", True),  # a suffix
        (STRIPE, ".stripe.com", True),
        (STRIPE, "meter-events.stripe.com", True),
        (STRIPE, "notstripe.com", False),
        (STRIPE, "example.com, stripe.com", True),
        (STRIPE, "meter-events.stripe.com:443", True),  # host:port
        (STRIPE, "meter-events.stripe.com:8443", False),
        ("http://127.0.0.1:12111", "127.0.0.1", True),  # an IP
        ("http://10.1.2.3:80", "10.0.0.0/8", True),  # a network
        ("http://10.1.2.3:80", "192.168.0.0/16", False),
        ("http://[::1]:8080", "::1", True),
        (STRIPE, "", False),
    ],
)
def test_no_proxy_names_hosts_like_requests_and_httpx(
    target: str, no_proxy: str, bypassed: bool
) -> None:
    environ = {"HTTPS_PROXY": "http://p:1", "HTTP_PROXY": "http://p:1", "NO_PROXY": no_proxy}
    assert (proxy_for(target, None, environ) is None) is bypassed


def test_an_explicit_proxy_wins_over_the_environment_no_proxy_included() -> None:
    environ = {"HTTPS_PROXY": "http://env:1", "NO_PROXY": "*"}
    route = proxy_for(STRIPE, "http://mine:3128", environ)
    assert route is not None and route.url == "http://mine:3128" and route.source == "proxy"


def test_http_proxy_is_ignored_under_cgi() -> None:
    # A CGI request's "Proxy:" header arrives as HTTP_PROXY (httpoxy).
    environ = {"HTTP_PROXY": "http://attacker:1", "REQUEST_METHOD": "GET"}
    assert proxy_for("http://127.0.0.1:1", None, environ) is None


@pytest.mark.parametrize("value", ["socks5://p:1080", "ftp://p:21", "http://", "http://p:notaport"])
def test_a_bad_proxy_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(ConfigurationError, match="^proxy: .*proxy URL"):
        Settings.resolve({"proxy": value})
    with pytest.raises(ConfigurationError, match="^METERSTREAM_PROXY: "):
        Settings.resolve({}, {"METERSTREAM_PROXY": value})


def test_a_proxy_password_is_never_shown() -> None:
    settings = Settings.resolve({"proxy": "http://user:s3cret@proxy.internal:3128"})
    assert settings.proxy == "http://user:s3cret@proxy.internal:3128"
    assert "s3cret" not in repr(settings)
    assert "proxy='http://user:***@proxy.internal:3128'" in repr(settings)
    with pytest.raises(ConfigurationError) as caught:
        Settings.resolve({"proxy": "socks5://user:s3cret@p:1"})
    assert "s3cret" not in str(caught.value)
    assert redact_url("http://p:1") == "http://p:1"


def test_ca_bundle_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigurationError, match=f"^ca_bundle: no such file.*{missing.name}"):
        Settings.resolve({"ca_bundle": str(missing)})
    assert Settings.resolve({"ca_bundle": str(tmp_path)}).ca_bundle == str(tmp_path)
    assert Settings.resolve({"ca_bundle": tmp_path}).ca_bundle == str(tmp_path)


def test_a_ca_bundle_that_is_not_pem_is_a_configuration_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="^ca_bundle: cannot load CA certificates"):
        ssl_context(ca_source(str(junk)))
    # The client refuses it at construction, not at the first batch.
    import meterstream

    with pytest.raises(ConfigurationError, match="ca_bundle"):
        meterstream.MeterClient(api_key="sk_test_x", ca_bundle=str(junk))


def test_ca_certificates_come_from_the_setting_then_the_environment_then_certifi(
    tmp_path: Path,
) -> None:
    import certifi

    pem = tmp_path / "ca.pem"
    pem.write_text("x")
    assert ca_source(str(pem), {"SSL_CERT_FILE": "/elsewhere"}).source == "ca_bundle"
    assert ca_source(None, {"SSL_CERT_FILE": str(pem)}).source == "SSL_CERT_FILE"
    assert ca_source(None, {"SSL_CERT_DIR": str(tmp_path)}).source == "SSL_CERT_DIR"
    assert ca_source(None, {"REQUESTS_CA_BUNDLE": str(pem)}).source == "REQUESTS_CA_BUNDLE"
    # A variable naming nothing is passed over, as httpx does.
    fallback = ca_source(None, {"SSL_CERT_FILE": str(tmp_path / "missing.pem")})
    assert fallback.source == "certifi" and fallback.path == certifi.where()
