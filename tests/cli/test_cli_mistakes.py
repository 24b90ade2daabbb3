"""The CLI a person uses: mistakes exit 2 naming the flag, failures exit 1 once.

Each test runs ``python -m meterstream`` as a real process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import meterstream
from helpers.cli import KEY, assert_usage_error, environment, run
from helpers.ports import free_port
from meterstream.emulator import Emulator


def test_version_prints_the_installed_version() -> None:
    result = run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"meterstream {meterstream.__version__}"


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--value", "abc"], "--value"),
        (["--value", "nan"], "--value"),
        (["--value", "1234567890123456"], "--value"),
        (["--base", "127.0.0.1:12111"], "--base"),
        (["--api-base", "localhost:12111"], "--api-base"),
        (["--stream-base", "ftp://x"], "--stream-base"),
        (["--timeout", "-1"], "--timeout"),
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "soon"], "--timeout"),
        (["--identifier", "x" * 101], "--identifier"),
    ],
)
def test_send_mistakes_exit_2_naming_the_flag(
    emulator: Emulator, args: list[str], flag: str
) -> None:
    base = [] if "--base" in args or "--api-base" in args else ["--base", emulator.url]
    result = run("send", "api_calls", "--customer", "cus_1", "--api-key", KEY, *base, *args)
    assert_usage_error(result, flag)
    assert emulator.state.events("api_calls") == []


def test_a_base_without_a_scheme_suggests_one() -> None:
    result = run("send", "e", "--customer", "c", "--api-key", KEY, "--base", "127.0.0.1:12111")
    assert "http://127.0.0.1:12111" in result.stderr


def test_send_without_a_key_exits_2_naming_the_flag_and_variable() -> None:
    result = run("send", "api_calls", "--customer", "cus_1", "--base", "http://127.0.0.1:9")
    assert_usage_error(result, "--api-key")
    assert "STRIPE_API_KEY" in result.stderr


def test_a_bad_environment_variable_is_named_as_set() -> None:
    result = run(
        "send",
        "api_calls",
        "--customer",
        "cus_1",
        "--api-key",
        KEY,
        env={"METERSTREAM_API_BASE": "localhost:1"},
    )
    assert result.returncode == 2
    assert "METERSTREAM_API_BASE" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_send_with_an_empty_customer_is_a_usage_error_naming_the_flag(emulator: Emulator) -> None:
    # An empty customer is invalid, not "no customer" (issue 24): the flag is named.
    result = run("send", "dropped", "--customer", "", "--base", emulator.url, "--api-key", KEY)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "sent" not in result.stdout
    assert "argument --customer: must not be empty (got '')" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert emulator.state.events("dropped") == []


def test_send_a_disabled_event_is_not_reported_as_sent(emulator: Emulator) -> None:
    # `send` is an explicit request: settings that turn metering off do not
    # silently swallow it.
    result = run(
        "send",
        "switched_off",
        "--customer",
        "cus_1",
        "--base",
        emulator.url,
        "--api-key",
        KEY,
        env={"METERSTREAM_ENABLED": "false", "METERSTREAM_DISABLED_EVENTS": "switched_off"},
    )
    assert result.returncode == 0, result.stderr
    assert len(emulator.state.events("switched_off")) == 1


@pytest.mark.slow
def test_send_to_a_closed_port_fails_once_within_the_timeout() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = run(
        "send",
        "api_calls",
        "--customer",
        "cus_1",
        "--timeout",
        "2",
        "--base",
        url,
        "--api-key",
        KEY,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].count(f"is anything listening at {url}?") == 1
    assert "Traceback" not in result.stderr
    # the command's own budget, plus a generous allowance for starting Python
    # on a loaded machine
    assert elapsed < 2 + 15


@pytest.mark.slow
def test_send_to_a_server_that_never_answers_fails_within_the_timeout() -> None:
    with Emulator(auto_create_meters=True) as hung:
        hung.set_faults(hang=True, apply_to_sessions=True)
        try:
            result = run(
                "send",
                "api_calls",
                "--customer",
                "cus_1",
                "--timeout",
                "1",
                "--base",
                hung.url,
                "--api-key",
                KEY,
            )
        finally:
            hung.set_faults(hang=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "within 1s" in lines[0]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--start", "120", "--end", "60"], "--end"),
        (["--start", "60", "--end", "60"], "--end"),
        (["--start", "61", "--end", "120"], "--start"),
        (["--start", "60", "--end", "125"], "--end"),
        (["--start", "60", "--end", "7200", "--window", "hour"], "--start"),
        (["--start", "0", "--end", "7200", "--window", "day"], "--end"),
    ],
)
def test_summary_mistakes_exit_2_naming_the_flag(
    emulator: Emulator, args: list[str], flag: str
) -> None:
    result = run(
        "summary", "--meter", "mtr_1", "--customer", "c", "--base", emulator.url, "--api-key", KEY,
        *args,
    )  # fmt: skip
    assert_usage_error(result, flag)


def test_summary_without_a_key_exits_2() -> None:
    result = run(
        "summary", "--meter", "mtr_1", "--customer", "c", "--start", "0", "--end", "60",
        "--base", "http://127.0.0.1:9",
    )  # fmt: skip
    assert_usage_error(result, "--api-key")


@pytest.mark.parametrize("flag", ["--calls", "--customers", "--workers"])
def test_demo_counts_below_1_exit_2_naming_the_flag(flag: str) -> None:
    result = run("demo", flag, "0")
    assert_usage_error(result, flag)
    # the flag at fault, not a list of every flag that could be
    others = {"--calls", "--customers", "--workers"} - {flag}
    assert not any(other in result.stderr for other in others)


# -- issue 24: the CLI as a user meets it ---------------------------------------------------------


def test_a_misspelt_command_gets_a_did_you_mean() -> None:
    result = run("sned")
    assert result.returncode == 2
    assert result.stderr.strip().endswith("did you mean 'send'? (see --help)"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_relay_without_nats_py_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    # A module named nats that cannot be imported: what a missing nats-py looks like.
    (tmp_path / "nats.py").write_text("raise ImportError('No module named nats')\n")
    result = run(
        "relay",
        "--nats-url",
        "nats://127.0.0.1:4222",
        env={"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])},
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        "meterstream relay: needs the NATS client: pip install 'meterstream[nats]'"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["spool", "status"],
        ["spool", "export"],
        ["usage"],
        ["cancel", "--event", "api_calls"],
        ["reconcile", "--since", "2025-06-15T00:00:00Z", "--until", "2025-06-16T00:00:00Z"],
    ],
)
def test_a_misspelt_flag_is_named_with_the_one_meant(command: list[str]) -> None:
    # --spool is required too: the misspelt flag is what to say, not the missing one.
    result = run(*command, "--spol", "x")
    assert_usage_error(result, "unrecognized argument --spol; did you mean --spool?")
    assert "required" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["spool", "status"],
        ["spool", "export", "--accepted"],
        ["spool", "replay"],
        ["usage"],
        ["cancel", "--event", "api_calls", "--identifier", "ev-1", "--api-key", KEY],
        ["reconcile", "--since", "2025-06-15T00:00:00Z", "--until", "2025-06-16T00:00:00Z"]
        + ["--api-key", KEY, "--base", "http://127.0.0.1:9"],
    ],
)
def test_the_spool_commands_read_the_spool_path_from_the_environment(
    command: list[str], tmp_path: Path
) -> None:
    missing = str(tmp_path / "not-there.db")
    result = run(*command, env={"METERSTREAM_SPOOL_PATH": missing})
    assert result.returncode == 2, result.stderr
    assert missing in result.stderr  # it went to open that spool
    assert "required" not in result.stderr
    words = command[:2] if command[0] == "spool" else command[:1]
    assert "METERSTREAM_SPOOL_PATH" in run(*words, "--help").stdout


def test_without_spool_or_the_variable_the_error_names_both() -> None:
    result = run("spool", "status")
    assert_usage_error(result, "--spool")
    assert "METERSTREAM_SPOOL_PATH" in result.stderr


@pytest.mark.parametrize(
    "command", [["usage", "--spool", "x"], ["summary"], ["reconcile"], ["cancel", "--event", "e"]]
)
def test_time_flags_say_iso_8601_in_help_and_errors(command: list[str]) -> None:
    flag = "--start" if command == ["summary"] else "--since"
    assert "ISO 8601 (2025-06-15T15:00:00Z" in run(*command[:1], "--help").stdout
    result = run(*command, flag, "yesterday")
    assert result.returncode == 2
    assert f"argument {flag}: 'yesterday' is not a time: give ISO 8601" in result.stderr


def test_the_demo_into_a_pipe_has_no_progress_bar_and_a_closed_pipe_no_traceback() -> None:
    whole = run("demo", "--calls", "200", "--customers", "2")
    assert whole.returncode == 0, whole.stderr
    assert "calls\r" not in whole.stdout and "[#" not in whole.stdout
    assert whole.stderr == ""  # its meters exist: no warning either
    # `meterstream demo | head -1`: the reader leaves after one line.
    demo = subprocess.Popen(
        [sys.executable, "-m", "meterstream", "demo", "--calls", "200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    assert demo.stdout is not None and demo.stderr is not None
    assert demo.stdout.readline().startswith("Stripe emulator listening on")
    demo.stdout.close()
    with demo.stderr:
        errors = demo.stderr.read()
    assert demo.wait(60) in (0, 1)
    assert "Traceback" not in errors and "BrokenPipeError" not in errors, errors
