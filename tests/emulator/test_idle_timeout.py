"""Connections that never finish a request are closed after ``idle_timeout``."""

from __future__ import annotations

import socket
import time

import httpx

from meterstream.emulator import Emulator


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes *sock* (recv gives b"" or a reset) within *seconds*."""
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_silent_and_slowloris_connections_are_closed_after_the_idle_timeout() -> None:
    with Emulator(idle_timeout=1.0) as emu:
        silent = socket.create_connection(("127.0.0.1", emu.port))
        slow = socket.create_connection(("127.0.0.1", emu.port))
        slow.sendall(b"POST /v2/billing/meter_event_session HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        try:
            assert _closed_within(silent, 10)
            assert _closed_within(slow, 10)
            assert time.monotonic() - started < 8
        finally:
            silent.close()
            slow.close()
        # Whole requests are served as ever, on the same connection too.
        with httpx.Client(base_url=emu.url) as http:
            for _ in range(3):
                answer = http.post(
                    "/v2/billing/meter_event_session",
                    headers={"Authorization": "Bearer sk_test_idle"},
                )
                assert answer.status_code == 200


def test_an_idle_keep_alive_connection_is_closed_after_the_timeout() -> None:
    with Emulator(idle_timeout=1.0) as emu:
        sock = socket.create_connection(("127.0.0.1", emu.port))
        try:
            sock.sendall(
                b"POST /v2/billing/meter_event_session HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer sk_test_idle\r\nContent-Length: 0\r\n\r\n"
            )
            sock.settimeout(10)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            sock.sendall(b"POST /v2/billing")  # then nothing more
            assert _closed_within(sock, 10)
        finally:
            sock.close()
