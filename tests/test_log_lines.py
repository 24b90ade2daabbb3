"""Log lines read well after the logger's name: no "meterstream:" twice, no "1 events"."""

from __future__ import annotations

import ast
import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest

import meterstream

SRC = Path(meterstream.__file__).parent
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}
SWEPT = sorted(SRC.rglob("*.py"))


def log_messages(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LOG_METHODS
        ):
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((node.lineno, arg.value))
    return found


@pytest.mark.parametrize("path", [p for p in SWEPT if p.exists()], ids=lambda p: p.name)
def test_log_messages_do_not_repeat_the_logger_name(path: Path) -> None:
    # Every logger is "meterstream" or below it, and handlers print its name.
    repeated = [
        (line, text) for line, text in log_messages(path) if re.match(r"meterstream[: ]", text)
    ]
    assert repeated == []


def test_the_demo_counts_in_the_singular(capsys: pytest.CaptureFixture[str]) -> None:
    from meterstream.cli._demo import run_demo

    out = io.StringIO()
    with redirect_stdout(out):
        assert run_demo(calls=1, customers=1, workers=1, progress=False) == 0
    text = out.getvalue()
    assert re.search(r"\b1 (calls|customers|threads|requests|events)\b", text) is None, text
    assert "1 API call from 1 customer on 1 thread" in text
