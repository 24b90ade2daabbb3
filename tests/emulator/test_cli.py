"""``python -m meterstream.emulator`` / ``main(argv)``, and running as a process."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from meterstream.emulator import Emulator, FaultConfig
from meterstream.emulator.__main__ import main


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--fail-500", "2"], "fraction between 0 and 1"),
        (["--fail-429", "lots"], "not a number"),
        (["--port", "70000"], "not a TCP port"),
        (["--session-ttl", "0"], "must be > 0"),
        (["--latency-ms", "-5"], "finite number >= 0"),
        (["--expire-next", "1.5"], "whole number"),
        (["--should-retry", "maybe"], "invalid choice"),
        (["--no-such-flag"], "unrecognized arguments"),
    ],
)
def test_a_usage_error_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "(see --help)" in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in (
        "--port",
        "--session-ttl",
        "--fail-500",
        "--fail-429",
        "--latency-ms",
        "--rps-limit",
        "--expire-next",
        "--hang",
        "--api-key",
        "--auto-create-meters",
    ):
        assert flag in out


def test_a_busy_port_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "Traceback" not in err


@pytest.mark.slow
def test_spawn_runs_the_cli_in_a_process_and_stops_it_cleanly() -> None:
    emu = Emulator.spawn(auto_create_meters=True, faults=FaultConfig(latency_ms=1), seed=3)
    try:
        assert emu.url == f"http://127.0.0.1:{emu.port}" == emu.api_base == emu.stream_base
        request = urllib.request.Request(
            emu.url + "/v2/billing/meter_event_session",
            method="POST",
            headers={"Authorization": "Bearer sk_test_spawn"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            token = json.loads(response.read())["authentication_token"]
        request = urllib.request.Request(
            emu.url + "/v2/billing/meter_event_stream",
            method="POST",
            data=json.dumps(
                {
                    "events": [
                        {"event_name": "e", "payload": {"stripe_customer_id": "c", "value": "2"}}
                    ]
                }
            ).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        snapshot = emu.snapshot()
        assert snapshot["totals"] == [{"event_name": "e", "customer": "c", "sum": 2.0, "count": 1}]
        assert snapshot["faults"]["latency_ms"] == 1.0
        assert emu.set_faults(fail_500=0.5)["fail_500"] == 0.5
        with pytest.raises(ValueError, match="unknown fault"):
            emu.set_faults(explode=True)
        emu.reset()
        assert emu.snapshot()["events_stored"] == 0
    finally:
        assert emu.stop() == 0


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_cli_prints_its_url_and_exits_cleanly_on_a_signal(sig: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "meterstream.emulator", "--port", "0", "--hang"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/_emulator/health", timeout=10) as response:
            assert response.status == 200
        process.send_signal(sig)
        _, err = process.communicate(timeout=15)
        assert process.returncode == 0
        assert "Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_without_uvicorn_the_server_module_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "from meterstream.emulator import EmulatorState, FaultConfig, create_app\n"
        "create_app(EmulatorState())\n"
        "try:\n"
        "    from meterstream.emulator import Emulator\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "pip install 'meterstream[emulator]'" in out
