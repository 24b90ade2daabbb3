"""Each page of the site has a title of its own (issue 24: the API reference
page was titled ``meterstream``, the site's own name, in the tab and the nav)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SITE_NAME = re.search(r"^site_name:\s*(.+)$", (ROOT / "mkdocs.yml").read_text(), re.M)


def _title(page: Path) -> str:
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return ""


PAGES = sorted(p for p in DOCS.rglob("*.md") if p.name not in ("index.md", "changelog.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_a_page_is_titled_other_than_the_site(page: Path) -> None:
    assert SITE_NAME is not None
    title = _title(page)
    assert title, f"{page.name}: no '# ' title"
    assert title != SITE_NAME[1].strip(), f"{page.name}: titled like the site itself"


@pytest.mark.parametrize("page", sorted((DOCS / "reference").glob("*.md")), ids=lambda p: p.name)
def test_the_api_reference_pages_say_what_they_are(page: Path) -> None:
    assert _title(page).startswith("API reference: "), _title(page)
