"""``meterstream emulator --open`` opens the page in the user's browser."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# A stand-in for the user's browser: writes the URL it was asked to open.
FAKE_BROWSER = "import sys, pathlib; pathlib.Path(sys.argv[1]).write_text(sys.argv[2])"


def test_open_hands_the_page_address_to_the_browser(tmp_path: Path) -> None:
    script = tmp_path / "browser.py"
    script.write_text(FAKE_BROWSER)
    opened = tmp_path / "opened.txt"
    env = {**os.environ, "BROWSER": f"{sys.executable} {script} {opened} %s"}
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "meterstream", "emulator", "--port", "0", "--open"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        deadline = time.monotonic() + 20
        while not opened.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # the child process writes it; nothing here to wait on
        assert opened.read_text() == url + "/"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0


def test_without_a_browser_the_address_is_said_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import webbrowser

    from meterstream.emulator.__main__ import open_page

    monkeypatch.setattr(webbrowser, "open", lambda url: False)
    open_page("http://127.0.0.1:1/")
    assert (
        capsys.readouterr().err == "could not open a browser; the page is at http://127.0.0.1:1/\n"
    )
