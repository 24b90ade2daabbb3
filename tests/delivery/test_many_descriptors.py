"""Keep-alive in a process with more than 1,024 descriptors open.

``select.select`` refuses a descriptor past ``FD_SETSIZE`` (1024); the idle
check used it, so in a busy process every kept connection looked dead and
each batch paid for a new connection (a new TLS handshake at Stripe).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from helpers import hostile_server as hs
from meterstream._exporters.stripe._http11 import Http11Pool

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX descriptors")


@pytest.fixture
def many_descriptors() -> Iterator[list[int]]:
    """Hold enough descriptors open that the next socket's number is past 1024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1200
    if soft < wanted + 100:
        if hard != resource.RLIM_INFINITY and hard < wanted + 100:
            pytest.skip(f"the descriptor limit ({hard}) is too low for this test")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted + 100, hard))
    held: list[int] = []
    try:
        while not held or held[-1] < wanted:
            held.append(os.open(os.devnull, os.O_RDONLY))
        yield held
    finally:
        for fd in held:
            os.close(fd)
        if soft < wanted + 100:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_kept_connection_past_descriptor_1024_is_reused(many_descriptors: list[int]) -> None:
    with hs.HostileServer("sk_test_fds") as server:
        # idle_check_after=0: every reuse goes through the idle check.
        pool = Http11Pool(server.url, timeout=5, connect_timeout=5, idle_check_after=0)
        try:
            for _ in range(3):
                reply = pool.post("/elsewhere", b"{}", {"Content-Type": "application/json"})
                assert reply.status == 404
            connection = pool._idle[0]
            assert connection.sock.fileno() > 1024
            assert pool.opened == 1
            assert server.connections == 1
        finally:
            pool.close()
