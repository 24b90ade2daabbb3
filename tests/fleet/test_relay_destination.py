"""`meterstream relay --destination metronome`: a fleet billed to Stripe and
Metronome at once, one relay group per destination, each getting every event."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from helpers.fleet_processes import finish, process_env, start_producer, start_relay
from helpers.nats_server import NatsServer
from helpers.poll import wait_for
from meterstream.emulator import Emulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

TOKEN = "mt_relay_token"


def _metronome_relay(url: str, emulator: Emulator) -> subprocess.Popen[bytes]:
    env = process_env()
    env["METRONOME_BEARER_TOKEN"] = TOKEN
    return subprocess.Popen(
        [sys.executable, "-m", "meterstream", "relay", "--nats-url", url]
        + ["--destination", "metronome", "--metronome-base", emulator.url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_relay_per_destination_delivers_every_event_to_both(
    nats_server: NatsServer, emulator: Emulator
) -> None:
    relays = [start_relay(nats_server.url, emulator), _metronome_relay(nats_server.url, emulator)]
    producer = start_producer(nats_server.url, "p", 300)
    expected = {f"p-{i}" for i in range(300)}
    try:
        code, err = finish(producer)
        assert code == 0, err

        def both() -> bool:
            stripe = {e["identifier"] for e in emulator.state.events()}
            return stripe >= expected and emulator.state.metronome.transaction_ids() >= expected

        assert wait_for(both, timeout=60)
    finally:
        for relay in relays:
            relay.send_signal(signal.SIGTERM)
        results = [finish(relay, 30) for relay in relays]
    assert len(emulator.state.metronome.events()) == 300
    for code, err in results:
        assert code == 0, err
        assert "Traceback" not in err


def test_metronome_without_a_token_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from meterstream.cli import main

    for name in ("METRONOME_BEARER_TOKEN", "METRONOME_API_KEY"):
        monkeypatch.delenv(name, raising=False)

    code = main(["relay", "--nats-url", "nats://127.0.0.1:1", "--destination", "metronome"])
    assert code == 2
    assert "METRONOME_BEARER_TOKEN" in capsys.readouterr().err
