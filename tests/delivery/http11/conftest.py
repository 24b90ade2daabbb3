"""Fixtures for the lean HTTP/1.1 client's tests: scripted servers and pools, closed after."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Optional

import pytest

from helpers.http11 import MakePool, MakeServer, ScriptedServer
from meterstream._exporters.stripe._http11 import Http11Pool


@pytest.fixture
def make_server() -> Iterator[MakeServer]:
    servers: list[ScriptedServer] = []

    def make(tls: Optional[ssl.SSLContext] = None) -> ScriptedServer:
        server = ScriptedServer(tls)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: MakeServer) -> ScriptedServer:
    return make_server()


@pytest.fixture
def make_pool() -> Iterator[MakePool]:
    pools: list[Http11Pool] = []

    def make(
        base_url: str,
        *,
        timeout: float = 5.0,
        connect_timeout: float = 2.0,
        max_idle: int = 5,
        ssl_context: Optional[ssl.SSLContext] = None,
        idle_check_after: float = 1.0,
    ) -> Http11Pool:
        pool = Http11Pool(
            base_url,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_idle=max_idle,
            ssl_context=ssl_context,
            idle_check_after=idle_check_after,
        )
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()
