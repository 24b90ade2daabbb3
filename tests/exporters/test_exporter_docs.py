"""docs/exporters.md: its user-written exporter runs as printed, with a real client."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import meterstream

DOC = Path(__file__).resolve().parents[2] / "docs" / "exporters.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.M | re.S)


def test_the_page_has_the_exporter_its_use_and_the_batch_example() -> None:
    blocks = python_blocks()
    assert len(blocks) == 3
    assert "class JsonLinesExporter(meterstream.Exporter)" in blocks[0]
    assert "MeterClient(exporter=JsonLinesExporter(" in blocks[1]


def test_the_json_lines_exporter_of_the_docs_gets_every_recorded_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    definition, use, _ = python_blocks()
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "exporters_doc"}
    exec(compile(definition, str(DOC), "exec"), namespace)
    try:
        exec(compile(use, str(DOC), "exec"), namespace)
    finally:
        if "client" in namespace:
            namespace["client"].shutdown(0)

    exporter = namespace["client"].exporter
    assert isinstance(exporter, namespace["JsonLinesExporter"])
    assert isinstance(exporter, meterstream.Exporter)
    # What the page says it prints is what it printed.
    printed = capsys.readouterr().out.strip()
    assert printed == "{'requests': 1, 'events_written': 2}"
    lines = (tmp_path / "usage.jsonl").read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in lines]
    assert [event["event_name"] for event in events] == ["report_generated", "api_call"]
    assert [event["payload"] for event in events] == [
        {"stripe_customer_id": "cus_123", "value": "1"},
        {"stripe_customer_id": "cus_123", "value": "3"},
    ]
    assert all(event["identifier"] and event["timestamp"] for event in events)
    assert len({event["identifier"] for event in events}) == 2
    # client.shutdown() closed the file (close() of the protocol was called).
    assert exporter._file.closed
    # The client's own stats read the exporter's through the protocol.
    stats = namespace["client"].stats()
    assert stats["sent"] == 2
    assert stats["requests"] == 1


def test_the_batch_example_of_the_docs_builds_a_batch() -> None:
    *_, testing = python_blocks()
    namespace: dict[str, Any] = {"meterstream": meterstream}
    exec(compile(testing, str(DOC), "exec"), namespace)
    batch = namespace["batch"]
    assert isinstance(batch, meterstream.EventBatch)
    assert len(batch) == 1
    assert batch.event_names() == ["api_call"]
    assert json.loads(batch.to_json()) == {
        "events": [{"event_name": "api_call", "payload": {"value": "1"}}]
    }
