"""The meterstream command: run as a real subprocess against the emulator."""

from __future__ import annotations

import time

import pytest

from helpers.cli import KEY, run
from meterstream.emulator import Emulator


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("emulator", "send", "summary", "demo"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["send", "summary", "demo", "emulator"])
def test_every_command_has_help(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["bogus"], "invalid choice"),
        (["send"], "required"),
        (["send", "api_calls"], "--customer"),
        (["summary", "--customer", "cus_1", "--start", "1", "--end", "2"], "--meter"),
        (
            ["summary", "--meter", "m", "--customer", "c", "--start", "yesterday", "--end", "2"],
            "ISO 8601",
        ),
        (["emulator", "--port", "not-a-port"], "not a whole number"),
    ],
)
def test_usage_errors_exit_2_with_a_one_line_hint(args: list[str], hint: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert hint in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3


def test_send_delivers_one_event(emulator: Emulator) -> None:
    result = run(
        "send",
        "api_calls",
        "--customer",
        "cus_1",
        "--value",
        "7",
        "--identifier",
        "cli-1",
        "--base",
        emulator.url,
        "--api-key",
        KEY,
    )
    assert result.returncode == 0, result.stderr
    assert "sent api_calls" in result.stdout
    (event,) = emulator.state.events("api_calls")
    assert event["identifier"] == "cli-1" and event["payload"]["value"] == "7"


def test_send_reads_the_key_and_bases_from_the_environment(emulator: Emulator) -> None:
    result = run(
        "send",
        "api_calls",
        "--customer",
        "cus_env",
        env={
            "STRIPE_API_KEY": KEY,
            "METERSTREAM_API_BASE": emulator.url,
            "METERSTREAM_STREAM_BASE": emulator.url,
        },
    )
    assert result.returncode == 0, result.stderr
    assert emulator.state.total("api_calls", "cus_env").count == 1


def test_send_without_a_key_is_a_usage_error_naming_the_flag() -> None:
    result = run("send", "api_calls", "--customer", "cus_1")
    assert result.returncode == 2
    assert "--api-key" in result.stderr and "Traceback" not in result.stderr


def test_send_an_invalid_value_fails_naming_the_field(emulator: Emulator) -> None:
    result = run(
        "send",
        "api_calls",
        "--customer",
        "cus_1",
        "--value",
        "lots",
        "--base",
        emulator.url,
        "--api-key",
        KEY,
    )
    assert result.returncode == 2
    assert "--value" in result.stderr and "Traceback" not in result.stderr


def test_send_with_a_refused_key_fails(emulator: Emulator) -> None:
    with Emulator(api_keys={"sk_test_other"}) as strict:
        result = run(
            "send",
            "api_calls",
            "--customer",
            "cus_1",
            "--base",
            strict.url,
            "--api-key",
            "sk_test_wrong",
        )
    assert result.returncode == 1
    assert "secret key" in result.stderr


def test_send_to_an_unreachable_stripe_times_out_with_exit_1() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run(
        "send",
        "api_calls",
        "--customer",
        "cus_1",
        "--timeout",
        "1",
        "--base",
        f"http://127.0.0.1:{port}",
        "--api-key",
        KEY,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr


def test_summary_prints_the_meters_totals(emulator: Emulator) -> None:
    for value in ("3", "4"):
        assert (
            run(
                "send",
                "tokens",
                "--customer",
                "cus_s",
                "--value",
                value,
                "--base",
                emulator.url,
                "--api-key",
                KEY,
            ).returncode
            == 0
        )
    start = int(time.time() // 3600 * 3600)
    result = run(
        "summary",
        "--event",
        "tokens",
        "--customer",
        "cus_s",
        "--start",
        str(start),
        "--end",
        str(start + 3600),
        "--base",
        emulator.url,
        "--api-key",
        KEY,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].split()[-1] == "7"


def test_summary_for_an_unknown_event_fails(emulator: Emulator) -> None:
    result = run(
        "summary",
        "--event",
        "nope",
        "--customer",
        "c",
        "--start",
        "0",
        "--end",
        "60",
        "--base",
        emulator.url,
        "--api-key",
        KEY,
    )
    assert result.returncode == 1
    assert "no active meter" in result.stderr


def test_demo_runs_end_to_end_and_says_the_totals_match() -> None:
    result = run("demo", "--calls", "600", "--customers", "3", "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All 6 totals match." in result.stdout
    assert "NO" not in result.stdout.split("Per-customer")[1].split()
