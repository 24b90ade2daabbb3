"""The journal's mutex: a lock, with the record path's take and give."""

from __future__ import annotations

import threading

import pytest

from meterstream._spool.mutex import Mutex


def test_it_is_a_lock() -> None:
    mutex = Mutex()
    assert not mutex.locked()
    assert mutex.acquire()
    assert mutex.locked()
    assert not mutex.acquire(blocking=False)
    assert not mutex.acquire(timeout=0.01)
    mutex.release()
    assert not mutex.locked()
    with mutex:
        assert mutex.locked()
    assert not mutex.locked()
    with pytest.raises(RuntimeError):
        mutex.release()  # a second token would let two threads in
    mutex.take()
    assert mutex.locked()
    mutex.give(None)
    assert not mutex.locked()


def test_one_thread_at_a_time_and_a_waiter_goes_on_when_it_is_given_back() -> None:
    mutex = Mutex()
    inside = 0
    most = 0
    count = 0
    guard = threading.Lock()  # only for the counts' own consistency
    start = threading.Barrier(8)

    def work() -> None:
        nonlocal inside, most, count
        start.wait()
        for _ in range(2000):
            mutex.take()
            try:
                with guard:
                    inside += 1
                    most = max(most, inside)
                count += 1  # unguarded on purpose: the mutex alone protects it
                with guard:
                    inside -= 1
            finally:
                mutex.give(None)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert most == 1
    assert count == 8 * 2000

    mutex.take()
    taken = threading.Event()

    def waiter() -> None:
        with mutex:
            taken.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert not taken.wait(0.05)  # blocked while held
    mutex.give(None)
    assert taken.wait(30)
    thread.join(30)
