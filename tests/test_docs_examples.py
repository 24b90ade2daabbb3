"""Every Python example in docs/ and the README runs, or says why it cannot.

A page's ```python blocks run in order, in one fresh interpreter and one
namespace, as a reader would type them: a block may use what an earlier block
of the same page defined. The interpreter has ``METERSTREAM_EXPORTER=memory``
(so even ``configure(api_key=...)`` sends nothing), ``STRIPE_API_KEY`` unset,
and a proxy at a closed local port for anything but 127.0.0.1: no example
reaches the internet. A block that needs a server starts the emulator itself.

A block that cannot run says so in an HTML comment on the line before its
fence, with a reason (the comment does not show on the site)::

    <!-- not-run: needs a Django project -->
    ```python
    ...
    ```

A block that runs once a stand-in for the reader's own code exists says so
with a ``setup`` comment instead; its code runs first, unseen::

    <!-- setup: def run_job(): return 12.5 -->

A block of pytest tests (``testing.md``) says ``pytest``: it is written to a
file of its own, after the comment's code, and run by pytest with the
meterstream plugin (its ``meter_events`` and ``stripe_emulator`` fixtures);
every test in it must pass. A comment may span lines::

    <!-- pytest:
    import meterstream
    -->

A page passes when its blocks run without an exception and meterstream logged
nothing at WARNING or above (a dropped or invalid event is a broken example).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")
COMMENT = re.compile(r"^\s*<!--\s*(?P<kind>not-run|setup|pytest):(?P<body>.*?)-->\s*$", re.S)


@dataclasses.dataclass
class Block:
    page: str
    line: int  # of the first line of code, 1-based
    code: str
    not_run: str | None  # the reason, when marked
    setup: str = ""  # hidden code run before the block
    pytest: bool = False  # a file of tests, run by pytest


def _comment_before(lines: list[str], fence: int) -> tuple[str, str] | None:
    """``(kind, body)`` of the mark comment ending just before line *fence*."""
    end = fence - 1
    while end >= 0 and not lines[end].strip():
        end -= 1
    if end < 0 or not lines[end].rstrip().endswith("-->"):
        return None
    start = end
    while start > 0 and "<!--" not in lines[start]:
        start -= 1
    match = COMMENT.match("\n".join(lines[start : end + 1]))
    if match is None:
        return None
    first, *rest = match["body"].split("\n")
    body = "\n".join(part for part in (first.strip(), textwrap.dedent("\n".join(rest))) if part)
    return match["kind"], body.strip()


def blocks(path: Path, root: Path = ROOT) -> list[Block]:
    """The ```python blocks of *path*, with their not-run marks."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        fence, info = match["fence"], match["info"].strip()
        start = i + 1
        end = start
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        if info.split(" ")[0] in ("python", "py"):
            kind, body = _comment_before(lines, i) or ("", "")
            found.append(
                Block(
                    page=str(path.relative_to(root)),
                    line=start + 1,
                    code=textwrap.dedent("\n".join(lines[start:end])),
                    not_run=body if kind == "not-run" else None,
                    setup=body if kind in ("setup", "pytest") else "",
                    pytest=kind == "pytest",
                )
            )
        i = end + 1
    return found


ALL_BLOCKS = {str(p.relative_to(ROOT)): blocks(p) for p in PAGES}

# Runs in the child: each block compiled with its page and line, so a
# traceback points at the markdown.
RUNNER = """
import json, logging, sys

class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []
    def emit(self, record):
        self.records.append(record)

warnings = Collect()
logging.getLogger("meterstream").addHandler(warnings)
namespace = {"__name__": "__main__"}
for block in json.load(sys.stdin):
    if block["setup"]:
        exec(compile(block["setup"], block["page"] + " (setup)", "exec"), namespace)
    code = compile("\\n" * (block["line"] - 1) + block["code"], block["page"], "exec")
    exec(code, namespace)
    import meterstream
    meterstream.flush(10)
    if warnings.records:
        where = f"{block['page']}:{block['line']}"
        sys.exit(f"{where}: meterstream logged " + "; ".join(
            f"{r.levelname} {r.getMessage()}" for r in warnings.records))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("METERSTREAM_", "STRIPE_"))}
    env.update(
        {
            "METERSTREAM_EXPORTER": "memory",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "ALL_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
            "PYTHONDONTWRITEBYTECODE": "1",
            # What the examples read from the environment.
            "STRIPE_API_KEY": "sk_test_docs",
            "STRIPE_KEY_EU": "sk_test_docs_eu",
        }
    )
    return env


def test_the_collector_finds_blocks_and_marks(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# T\n\n```python\nx = 1\n```\n\n<!-- not-run: needs a key -->\n"
        "```python\ny = 2\n```\n\n<!-- setup: w = 0 -->\n```python\nw\n```\n\n"
        "- item:\n\n  ```python\n  z = 3\n  ```\n\n"
        "<!-- pytest:\n    import os\n    import sys\n-->\n```python\ndef test_x(): pass\n```\n",
        encoding="utf-8",
    )
    found = blocks(page, root=tmp_path)
    assert [(b.line, b.code, b.not_run, b.setup, b.pytest) for b in found] == [
        (4, "x = 1", None, "", False),
        (9, "y = 2", "needs a key", "", False),
        (14, "w", None, "w = 0", False),
        (20, "z = 3", None, "", False),
        (28, "def test_x(): pass", None, "import os\nimport sys", True),
    ]


def test_every_page_with_python_is_collected() -> None:
    assert ALL_BLOCKS["docs/quickstart.md"], "the quickstart has examples"
    assert ALL_BLOCKS["README.md"]


@pytest.mark.parametrize(
    "block",
    [b for page in ALL_BLOCKS.values() for b in page if b.not_run is not None],
    ids=lambda b: f"{b.page}:{b.line}",
)
def test_a_block_not_run_says_why(block: Block) -> None:
    assert len(block.not_run or "") >= 10, f"{block.page}:{block.line}: give a reason"
    compile(block.code, block.page, "exec")  # still Python


@pytest.mark.parametrize(
    "page",
    [
        page
        for page, found in ALL_BLOCKS.items()
        if any(b.not_run is None and not b.pytest for b in found)
    ],
)
def test_the_examples_of_a_page_run(page: str, tmp_path: Path) -> None:
    runnable = [
        dataclasses.asdict(b) for b in ALL_BLOCKS[page] if b.not_run is None and not b.pytest
    ]
    result = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(runnable),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_quickstart_runs_as_copied_against_the_emulator(tmp_path: Path) -> None:
    """The quickstart's blocks pasted one after the other into a file, run as a
    reader runs it: no hidden setup, no exporter from the test's environment,
    the events delivered to the emulator the page starts."""
    found = ALL_BLOCKS["docs/quickstart.md"]
    assert all(b.not_run is None and not b.setup and not b.pytest for b in found), (
        "every quickstart block runs as shown: nothing hidden, nothing skipped"
    )
    script = tmp_path / "quickstart.py"
    script.write_text("\n\n".join(b.code for b in found) + "\n", encoding="utf-8")
    env = {k: v for k, v in _env().items() if not k.startswith(("METERSTREAM_", "STRIPE_"))}
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""  # no warning: every event name has its meter
    stats = next(line for line in result.stdout.splitlines() if line.startswith("{"))
    assert "'sent': 4," in stats and "'dropped': 0," in stats, stats
    assert "Total(sum=3.0, count=1)" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "block",
    [b for page in ALL_BLOCKS.values() for b in page if b.pytest],
    ids=lambda b: f"{b.page}:{b.line}",
)
def test_the_example_tests_pass(block: Block, tmp_path: Path) -> None:
    name = re.sub(r"\W", "_", f"{block.page}_{block.line}")
    (tmp_path / f"test_{name}.py").write_text(f"{block.setup}\n\n{block.code}\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout
