"""One idea a module: none of src/meterstream grows past ~400 lines unnoticed.

A module over the limit is usually two ideas. One that reads better whole is
listed in ALLOWED with the reason, in one line; an entry marked "split
pending" is a cut still to make. Removing an entry (or a module shrinking
below the limit) is always welcome: the test also fails on entries that no
longer need to be here, so the list stays true.
"""

from __future__ import annotations

from pathlib import Path

import meterstream

LIMIT = 400
PACKAGE = Path(meterstream.__file__).parent

#: Modules allowed over LIMIT lines (path under src/meterstream), and why.
ALLOWED: dict[str, str] = {
    "_client/client.py": "the public facade: its docstrings are the API reference",
    "_delivery/delivery.py": "one state machine under one lock: take, attempt, settle, flush, stop",
    "_exporters/stripe/_http11.py": "one HTTP/1.1 exchange: every read re-arms one deadline",
    "emulator/_state.py": "the emulator's public facade: one documented method per endpoint",
    "_config/settings.py": "the one table of setting declarations, in the reference's order",
    "emulator/_app.py": "about 400: the ASGI app's routing and error shapes, one idea",
    "integrations/_common.py": "about 400: what the three web integrations share, one idea",
    "_exporters/stripe/_exporter.py": "about 400: the Stripe exporter, one idea",
    "_spool/journal.py": "one process's segments: writer, reader and cursors share one lock "
    "discipline (to be split: the reader's half, issue 25)",
    "_spool/spool.py": "the spool's facade: every operation the record and delivery paths "
    "call, over the journal and the SQLite file",
}


def _sizes() -> dict[str, int]:
    return {
        path.relative_to(PACKAGE).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def test_no_module_passes_the_limit_without_a_reason() -> None:
    over = {name: lines for name, lines in _sizes().items() if lines > LIMIT}
    unexplained = {name: lines for name, lines in over.items() if name not in ALLOWED}
    assert not unexplained, (
        f"modules over {LIMIT} lines: split them by idea, or add each to ALLOWED "
        f"with a one-line reason: {unexplained}"
    )


def test_every_allowed_module_exists_and_still_needs_its_entry() -> None:
    sizes = _sizes()
    stale = {name: sizes.get(name) for name in ALLOWED if sizes.get(name, 0) <= LIMIT}
    assert not stale, f"remove these from ALLOWED (gone, or now within {LIMIT} lines): {stale}"


def test_each_reason_is_one_line() -> None:
    for name, reason in ALLOWED.items():
        assert reason.strip() and "\n" not in reason, name
