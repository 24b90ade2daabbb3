"""The nats_* settings: parsed at configure(), secrets never shown."""

from __future__ import annotations

import pytest

import meterstream
from meterstream._config.settings import Settings
from meterstream.errors import ConfigurationError


def test_secrets_in_the_url_are_not_in_the_settings_repr() -> None:
    settings = Settings.resolve(
        {"nats_url": "nats://app:s3cret@h1:4222,nats://T0KEN@h2:4222", "exporter": "memory"}
    )
    shown = repr(settings)
    assert "s3cret" not in shown and "T0KEN" not in shown
    assert "nats://app:***@h1:4222,nats://***@h2:4222" in shown


def test_an_unreachable_server_error_does_not_show_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        meterstream.MeterClient(exporter="nats", nats_url="nats://app:s3cret@127.0.0.1:1")
    assert "s3cret" not in str(caught.value)
    assert "nats_url" in str(caught.value)


def test_the_environment_gives_the_nats_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERSTREAM_NATS_URL", "nats://a:1, nats://b:2")
    monkeypatch.setenv("METERSTREAM_NATS_STREAM", "BILLING")
    monkeypatch.setenv("METERSTREAM_NATS_REPLICAS", "3")
    settings = Settings.resolve({"exporter": "memory"})
    assert settings.nats_url == "nats://a:1,nats://b:2"
    assert settings.nats_stream == "BILLING"
    assert settings.nats_replicas == 3


@pytest.mark.parametrize("stream", ["a.b", "has space", "", "x" * 33, "wild*"])
def test_a_bad_stream_name_names_nats_stream(stream: str) -> None:
    with pytest.raises(ConfigurationError, match="nats_stream"):
        Settings.resolve({"nats_stream": stream, "exporter": "memory"})
