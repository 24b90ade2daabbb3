"""One record path: the fast path is decided by the client's ``RecordPath``, and only there."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import meterstream
from helpers.poll import wait_for
from meterstream._aggregate.aggregator import Aggregator
from meterstream._client.record_path import RecordPath

PACKAGE = Path(meterstream.__file__).parent
FIELDS = set(RecordPath.__slots__)


def _path(**given: object) -> RecordPath:
    settings: dict[str, object] = {
        "aggregator": None,
        "spool": False,
        "always_slow": False,
        "span_events": False,
        "warn_no_key": False,
        "started": lambda: True,
    }
    settings.update(given)
    return RecordPath(**settings)  # type: ignore[arg-type]


def test_the_fast_path_is_open_only_while_nothing_needs_the_checked_one() -> None:
    assert not _path().slow
    for reason in (
        {"always_slow": True},
        {"span_events": True},
        {"warn_no_key": True},
        {"spool": True},
        {"started": lambda: False},
    ):
        assert _path(**reason).slow, reason


def test_each_update_decides_again() -> None:
    path = _path()
    path.update(use_sink=lambda *use: None)
    assert path.slow
    path.update(use_sink=None)
    assert not path.slow
    path.update(span_events=True)
    assert path.slow
    path.update(span_events=False)
    assert not path.slow


def test_an_in_memory_aggregator_is_offered_to_record_while_quiet() -> None:
    aggregator = Aggregator(["tokens"], 60)
    path = _path(aggregator=aggregator)
    assert path.slow  # record_constant: aggregation happens on the checked path
    assert path.aggregate_now is aggregator
    path.update(span_events=True)
    assert path.aggregate_now is None


def test_once_closed_no_update_opens_a_fast_path_again() -> None:
    # A delivery thread's tick (OpenTelemetry's mode decided again) racing
    # shutdown() used to be able to write the fast path open after it closed.
    path = _path(aggregator=Aggregator(["tokens"], 60))
    path.update(closed=True)
    path.update(span_events=False, use_sink=None, warn_no_key=False)
    path.update(closed=False)
    path.update()
    assert path.closed and path.slow and path.aggregate_now is None


@pytest.fixture
def client() -> Iterator[meterstream.MeterClient]:
    client = meterstream.MeterClient(exporter="memory", otel_span_events=False)
    yield client
    client.shutdown(0)


def test_a_client_opens_its_fast_path_when_its_delivery_threads_start(
    client: meterstream.MeterClient,
) -> None:
    assert client._path.slow
    client.record("calls", customer="cus_1")  # starts the delivery threads
    assert wait_for(lambda: not client._path.slow)
    client.shutdown(0)
    assert client._path.slow
    client.refresh_otel()  # what each delivery wake does
    assert client._path.slow


def test_watching_uses_takes_the_checked_path_and_sees_every_use(
    client: meterstream.MeterClient,
) -> None:
    client.record("calls", customer="cus_1")
    assert wait_for(lambda: not client._path.slow)
    seen: list[str] = []
    client._watch_uses(lambda name, *rest: seen.append(name))
    assert client._path.slow
    client.record_constant("calls", 1, "cus_1", None)
    client._watch_uses(None)
    assert not client._path.slow
    client.record_constant("calls", 1, "cus_1", None)
    assert seen == ["calls"]
    assert client.flush(5)
    assert len(client.exporter.events) == 3  # type: ignore[attr-defined]


def test_after_a_fork_the_path_is_armed_again_for_the_child() -> None:
    path = _path()
    path.canary[0] = 0  # what the kernel does to the page in a child
    path.pid = -1
    path.after_fork_in_child()
    assert path.canary[0] == 1
    assert path.pid > 0


def _writes_to_a_record_path_outside_it() -> list[str]:
    """``<...>._path.<field> = ...`` or ``path.<field> = ...`` anywhere else."""
    found: list[str] = []
    for module in sorted(PACKAGE.rglob("*.py")):
        if module.name == "record_path.py":
            continue
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            for target in targets:
                if not (isinstance(target, ast.Attribute) and target.attr in FIELDS):
                    continue
                owner = target.value
                if (isinstance(owner, ast.Attribute) and owner.attr == "_path") or (
                    isinstance(owner, ast.Name) and owner.id == "path"
                ):
                    found.append(f"{module.relative_to(PACKAGE)}:{node.lineno}")
    return found


def test_nothing_but_the_record_path_writes_its_fields() -> None:
    assert _writes_to_a_record_path_outside_it() == []
