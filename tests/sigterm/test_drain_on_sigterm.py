"""meterstream.drain_on_sigterm(): the handler in this process (chaining, idempotence, threads)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from types import FrameType
from typing import Any, Optional

import pytest

import meterstream
from meterstream import _signals


@pytest.fixture(autouse=True)
def _restore_sigterm() -> Iterator[None]:
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)
    _signals._previous = signal.SIG_DFL


@pytest.fixture
def buffered() -> Iterator[meterstream.MeterClient]:
    """A memory client that never flushes by itself, with two events waiting."""
    client = meterstream.MeterClient(exporter="memory", flush_interval=3600)
    client.record("api_calls", 1, customer="cus_1")
    client.record("api_calls", 2, customer="cus_1")
    yield client
    client.shutdown(0)


def sent(client: meterstream.MeterClient) -> int:
    return len(client.exporter.events)  # type: ignore[attr-defined]


def test_nothing_is_installed_until_asked() -> None:
    code = (
        "import signal, meterstream\n"
        "meterstream.configure(exporter='memory').record('e', 1, customer='c')\n"
        "print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "True"


def test_sigterm_flushes_then_calls_the_previous_handler(
    buffered: meterstream.MeterClient,
) -> None:
    calls: list[tuple[int, int]] = []

    def previous(signum: int, frame: Optional[FrameType]) -> None:
        calls.append((signum, sent(buffered)))

    signal.signal(signal.SIGTERM, previous)
    meterstream.drain_on_sigterm()
    signal.raise_signal(signal.SIGTERM)
    # the previous handler ran once, after the buffer had been delivered
    assert calls == [(signal.SIGTERM, 2)]
    # and the client still accepts events: the server's own shutdown decides
    buffered.record("api_calls", 3, customer="cus_1")
    assert buffered.flush(5) and sent(buffered) == 3


def test_an_ignored_sigterm_stays_ignored_but_flushes(buffered: meterstream.MeterClient) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    meterstream.drain_on_sigterm()
    signal.raise_signal(signal.SIGTERM)
    assert sent(buffered) == 2


def test_calling_it_twice_keeps_one_handler_and_the_first_previous() -> None:
    calls: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    meterstream.drain_on_sigterm()
    handler = signal.getsignal(signal.SIGTERM)
    meterstream.drain_on_sigterm()
    assert signal.getsignal(signal.SIGTERM) is handler
    signal.raise_signal(signal.SIGTERM)
    assert calls == [signal.SIGTERM]


def test_from_another_thread_it_is_a_clear_error() -> None:
    errors: list[BaseException] = []

    def call() -> None:
        try:
            meterstream.drain_on_sigterm()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(10)
    (error,) = errors
    assert isinstance(error, RuntimeError) and "main thread" in str(error)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_from_another_thread_once_installed_it_is_a_no_op() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    meterstream.drain_on_sigterm()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            meterstream.drain_on_sigterm()
        except BaseException as exc:  # pragma: no cover - the failure being tested
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(10)
    assert errors == []


def test_a_drain_that_cannot_finish_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # A client whose delivery is stuck (for example on a lock the interrupted
    # main thread holds) cannot hold the handler past shutdown_timeout.
    stuck = threading.Event()
    client = meterstream.MeterClient(exporter="memory", shutdown_timeout=0.2)
    client.record("api_calls", 1, customer="cus_1")

    def flush(timeout: Optional[float] = None) -> bool:
        stuck.wait(30)
        return False

    monkeypatch.setattr(client, "flush", flush)
    calls: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    meterstream.drain_on_sigterm()
    try:
        signal.raise_signal(signal.SIGTERM)
        assert calls == [signal.SIGTERM]
    finally:
        stuck.set()
        client.shutdown(0)


def test_the_handler_survives_a_client_that_raises(
    monkeypatch: pytest.MonkeyPatch, internal_errors: list[BaseException]
) -> None:
    client = meterstream.MeterClient(exporter="memory")

    def flush(timeout: Optional[float] = None) -> Any:
        raise OSError("disk on fire")

    monkeypatch.setattr(client, "flush", flush)
    calls: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    meterstream.drain_on_sigterm()
    signal.raise_signal(signal.SIGTERM)
    assert calls == [signal.SIGTERM]
    assert [type(e) for e in internal_errors] == [OSError]
    internal_errors.clear()
    client.shutdown(0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_fork_while_draining_does_not_leave_the_child_draining() -> None:
    _signals._draining = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os._exit(0 if _signals._draining is False else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        _signals._draining = False


def test_a_second_sigterm_while_draining_does_not_wait_again(
    buffered: meterstream.MeterClient,
) -> None:
    calls: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(sent(buffered)))
    meterstream.drain_on_sigterm()
    _signals._draining = True  # as if the first SIGTERM's drain were under way
    try:
        signal.raise_signal(signal.SIGTERM)
    finally:
        _signals._draining = False
    # straight on to the previous handler, nothing flushed on the way
    assert calls == [0]
