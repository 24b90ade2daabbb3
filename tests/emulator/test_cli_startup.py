"""The emulator refuses at start what would make it useless, and says what to do."""

from __future__ import annotations

import socket

import pytest

from meterstream.emulator.__main__ import main


@pytest.mark.parametrize("size", ["0", "1", "100"])
def test_a_body_limit_too_small_for_one_event_is_refused(
    capsys: pytest.CaptureFixture[str], size: str
) -> None:
    assert main(["--max-body-bytes", size, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--max-body-bytes" in err and "(see --help)" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("key", ["", " ", "sk_test_a b"])
def test_a_key_no_client_can_send_is_refused(capsys: pytest.CaptureFixture[str], key: str) -> None:
    assert main(["--api-key", key, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--api-key" in err and len(err.strip().splitlines()) == 1


def test_a_busy_port_suggests_port_0(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "--port 0" in err
