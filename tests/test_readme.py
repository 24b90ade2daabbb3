"""The README's commands each work first in a fresh clone; the quickstart installs what exists.

Issue 24, item 8: the demo and the tests both made ``.venv``, so the second
command reused the first's virtualenv (and its extras); and the quickstart
began with ``pip install meterstream``, which fails while the package is not
on the index.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = re.compile(
    r"python3 -m venv (?P<dir>\S+) && \. (?P<activate>\S+)/bin/activate && pip install -e "
)


def sh_lines(page: Path) -> list[str]:
    lines, inside = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```sh"
            continue
        if inside:
            lines.append(line)
    return lines


def test_each_readme_command_makes_installs_and_uses_its_own_virtualenv() -> None:
    commands = [line for line in sh_lines(ROOT / "README.md") if "python3 -m venv" in line]
    assert len(commands) >= 2
    dirs = []
    for command in commands:
        match = VENV.search(command)
        assert match, command
        assert match["dir"] == match["activate"], command
        dirs.append(match["dir"])
    assert len(set(dirs)) == len(dirs), dirs


def test_the_quickstart_installs_from_a_clone_or_git_and_keeps_the_index_name_for_later() -> None:
    page = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    first = next(line for line in sh_lines(ROOT / "docs" / "quickstart.md") if line.strip())
    assert not first.startswith("pip install meterstream"), first
    assert "pip install -e ." in page and "git+" in page
    assert "not on the package index yet" in page
