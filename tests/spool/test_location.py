"""spool_path="auto": the per-user state directory each platform expects, named after the app."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meterstream._spool import location


def test_linux_uses_xdg_state_home_else_local_state() -> None:
    env = {"HOME": "/home/ada", "XDG_STATE_HOME": "/srv/state"}
    assert location.auto_path("shop", "linux", env) == "/srv/state/meterstream/shop/spool.db"
    env = {"HOME": "/home/ada", "XDG_STATE_HOME": "relative/is/ignored"}
    assert location.auto_path("shop", "linux", env) == (
        "/home/ada/.local/state/meterstream/shop/spool.db"
    )


def test_macos_and_windows() -> None:
    mac = location.auto_path("shop", "darwin", {"HOME": "/Users/ada"})
    assert mac == "/Users/ada/Library/Application Support/meterstream/shop/spool.db"
    win = location.state_home("win32", {"HOME": "/h", "LOCALAPPDATA": "C:\\Users\\ada\\AppData"})
    assert win == "C:\\Users\\ada\\AppData"


def test_the_application_is_the_program(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.modules", {**__import__("sys").modules, "__main__": object()})
    assert location.application_name(["/usr/bin/gunicorn", "app:wsgi"]) == "gunicorn"
    assert location.application_name(["/srv/manage.py"]) == "manage"
    assert location.application_name(["-c"]) == "python"
    assert location.application_name(["/srv/my app!.py"]) == "my_app"


def test_resolve_makes_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setattr("sys.platform", "linux")
    path, problem = location.resolve("shop")
    assert problem is None
    assert path == str(tmp_path / "meterstream" / "shop" / "spool.db")
    assert os.path.isdir(os.path.dirname(path))


def test_resolve_says_why_it_cannot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocked))
    monkeypatch.setattr("sys.platform", "linux")
    path, problem = location.resolve("shop")
    assert path.startswith(str(blocked)) and problem is not None and "cannot create" in problem


def test_a_client_with_auto_records_durably_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import meterstream

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setattr("sys.platform", "linux")
    client = meterstream.MeterClient(
        api_key="sk_test_auto",
        api_base="http://127.0.0.1:9",
        stream_base="http://127.0.0.1:9",
        spool_path="auto",
        spool_app="shop",
        flush_interval=3600,
    )
    try:
        assert client.spool is not None
        assert client.spool.path == str(tmp_path / "meterstream" / "shop" / "spool.db")
        client.record("api_calls", customer="cus_1")
        assert client.spool.pending_count() == 1
    finally:
        client.shutdown(0)


def test_an_unwritable_auto_location_falls_back_to_memory_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import meterstream

    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocked))
    monkeypatch.setattr("sys.platform", "linux")
    client = meterstream.MeterClient(exporter="none", spool_path="auto", spool_app="shop")
    try:
        assert client.spool is None
        warnings = [r for r in caplog.records if r.levelname == "WARNING" and "auto" in r.message]
        assert len(warnings) == 1 and str(blocked) in warnings[0].getMessage()
        client.record("api_calls", customer="cus_1")
        assert client.stats()["recorded"] == 1
    finally:
        client.shutdown(0)
