"""Each setting is declared once; the reference table and the resolution follow from it."""

from __future__ import annotations

import dataclasses
import pathlib
import typing
from typing import Any

import pytest

import meterstream
from meterstream._config import setting as _setting
from meterstream._config import settings as _config
from meterstream._config import table as _settings_table
from meterstream._config.setting import UNSET
from meterstream._config.settings import SETTINGS, Settings

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_reference_table_is_generated_from_the_declarations() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert _settings_table.rewrite(text) == text, (
        "docs/configuration.md is out of date: run "
        "python -m meterstream._config.table docs/configuration.md"
    )


def test_the_table_has_one_row_per_setting_with_its_environment_variable() -> None:
    rows = [
        line for line in DOCS.read_text(encoding="utf-8").splitlines() if line.startswith("| `")
    ]
    table = rows[: len(SETTINGS)]
    assert [row.split("|")[1].strip() for row in table] == [f"`{s.name}`" for s in SETTINGS]
    for row, declared in zip(table, SETTINGS):
        assert f"`METERSTREAM_{declared.name.upper()}`" in row.split("|")[2]
    api_key = table[[s.name for s in SETTINGS].index("api_key")]
    assert "`STRIPE_API_KEY`" in api_key.split("|")[2]


def test_the_regenerating_command_rewrites_a_stale_table(tmp_path: pathlib.Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(
        f"intro\n{_settings_table.BEGIN}\n| old | table |\n{_settings_table.END}\nrest\n",
        encoding="utf-8",
    )
    assert _settings_table.main([str(stale)]) == 0
    text = stale.read_text(encoding="utf-8")
    assert "| old |" not in text and _settings_table.markdown() in text
    assert text.startswith("intro\n") and text.endswith("rest\n")


def test_every_field_of_settings_is_a_declared_setting_with_a_type() -> None:
    hints = typing.get_type_hints(Settings)
    fields = [f.name for f in dataclasses.fields(Settings) if not f.name.startswith("_")]
    assert fields == [s.name for s in SETTINGS] == list(_config.SETTING_NAMES)
    assert all(name in hints for name in fields)
    assert len(SETTINGS) == len(set(_config.SETTING_NAMES))


@pytest.mark.parametrize("declared", SETTINGS, ids=lambda s: s.name)
def test_each_declaration_is_one_line_a_table_can_hold(declared: _setting.Setting) -> None:
    assert declared.env[0] == "METERSTREAM_" + declared.name.upper()
    for text in (declared.doc, declared.shown_default):
        assert text and "\n" not in text and "|" not in text


@pytest.mark.parametrize(
    "declared", [s for s in SETTINGS if s.default is not UNSET], ids=lambda s: s.name
)
def test_each_default_is_a_value_its_parser_accepts(declared: _setting.Setting) -> None:
    assert declared.parse(declared.default, declared.name) == declared.default


def test_nothing_given_resolves_to_the_declared_defaults() -> None:
    settings = Settings.resolve({}, {})
    for declared in SETTINGS:
        if declared.default is not UNSET:
            assert getattr(settings, declared.name) == declared.default, declared.name
        assert not settings.is_set(declared.name)
    assert settings.exporter == "log"


def test_unset_as_a_keyword_means_not_given() -> None:
    env = {"METERSTREAM_BATCH_SIZE": "7", "STRIPE_API_KEY": "sk_test_x"}
    settings = Settings.resolve({"batch_size": UNSET, "api_key": UNSET, "exporter": UNSET}, env)
    assert settings.batch_size == 7
    assert settings.api_key == "sk_test_x"
    assert settings.exporter == "stripe"
    assert repr(UNSET) == "UNSET" and not UNSET


def test_is_set_tells_a_given_setting_from_a_default() -> None:
    settings = Settings.resolve(
        {"batch_size": 10, "flush_interval": None}, {"METERSTREAM_OVERFLOW": "block"}
    )
    assert settings.is_set("batch_size") and settings.is_set("overflow")
    assert not settings.is_set("flush_interval") and not settings.is_set("exporter")
    from_fallback = Settings.resolve({}, {"STRIPE_API_KEY": "sk_test_x"})
    assert from_fallback.is_set("api_key")


def test_settings_are_read_only() -> None:
    settings = Settings.resolve({}, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.batch_size = 5  # type: ignore[misc]


def test_each_client_gets_its_own_mutable_defaults() -> None:
    first, second = Settings.resolve({}, {}), Settings.resolve({}, {})
    assert first.payload_keys == {} and first.payload_keys is not second.payload_keys


def test_secrets_are_redacted_by_their_declaration() -> None:
    settings = Settings.resolve(
        {"api_key": "sk_test_s3cret", "proxy": "http://user:pw-s3cret@proxy.internal:3128"}, {}
    )
    shown = repr(settings)
    assert "s3cret" not in shown and "sk_test_***" in shown
    assert all(f"{s.name}=" in shown for s in SETTINGS)


def test_a_client_built_from_each_declared_default_works() -> None:
    kwargs: dict[str, Any] = {s.name: s.default for s in SETTINGS if s.default not in (None, UNSET)}
    client = meterstream.MeterClient(**kwargs, exporter="memory")
    client.record("calls", customer="cus_1")
    assert client.flush(10)
    assert len(client.exporter.events) == 1  # type: ignore[attr-defined]
    client.shutdown(0)
