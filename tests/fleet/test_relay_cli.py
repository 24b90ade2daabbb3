"""`meterstream relay` mistakes: exit 2 with a one-line hint naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterstream.cli import main


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    try:
        code = main(["relay", *args])
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


BASE = ("--nats-url", "nats://127.0.0.1:1", "--api-key", "sk_test_1")


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (("--nats-url", "http://127.0.0.1:4222", "--api-key", "sk_test_1"), "--nats-url"),
        (BASE, "--nats-url"),
        ((*BASE, "--stream", "a.b"), "--stream"),
        ((*BASE, "--workers", "0"), "--workers"),
        ((*BASE, "--batch-size", "101"), "--batch-size"),
        (("--nats-url", "nats://127.0.0.1:1"), "--api-key"),
    ],
)
def test_a_mistake_exits_2_naming_the_flag(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    hint: str,
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    monkeypatch.delenv("METERSTREAM_API_KEY", raising=False)
    code, err = _run(capsys, *args)
    assert code == 2
    assert hint in err
    assert "Traceback" not in err


def test_a_missing_credentials_file_names_credentials(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = str(tmp_path / "relay.creds")
    code, err = _run(
        capsys,
        "--nats-url",
        "nats://127.0.0.1:1",
        "--api-key",
        "sk_test_1",
        "--credentials",
        missing,
    )
    assert code == 2
    assert "--credentials: no such file" in err
