"""The settings table of ``docs/configuration.md``, generated from the declarations.

Run ``python -m meterstream._config.table docs/configuration.md`` after
changing a setting: it rewrites the table between its two markers. A test
fails while the file is out of date.
"""

from __future__ import annotations

import sys
from typing import Optional

from meterstream._config.settings import SETTINGS

__all__ = ["BEGIN", "END", "markdown", "rewrite"]

BEGIN = (
    "<!-- settings table: generated from the declarations in _config/settings.py by "
    "`python -m meterstream._config.table docs/configuration.md`; do not edit -->"
)
END = "<!-- end of settings table -->"


def markdown() -> str:
    """The table, one row per setting, in declaration order."""
    lines = ["| setting | environment | default | meaning |", "|---|---|---|---|"]
    for declared in SETTINGS:
        env = ", else ".join(f"`{name}`" for name in declared.env)
        lines.append(f"| `{declared.name}` | {env} | {declared.shown_default} | {declared.doc} |")
    return "\n".join(lines) + "\n"


def rewrite(text: str) -> str:
    """*text* with the table between the markers replaced by :func:`markdown`.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    start = text.find(BEGIN)
    end = text.find(END)
    if start < 0 or end < start:
        raise ValueError("the settings table markers are missing or out of order")
    return text[: start + len(BEGIN)] + "\n" + markdown() + text[end:]


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m meterstream._config.table docs/configuration.md")
        return 2
    with open(args[0], encoding="utf-8") as file:
        text = file.read()
    try:
        new = rewrite(text)
    except ValueError as exc:
        print(f"{args[0]}: {exc}")
        return 1
    if new != text:
        with open(args[0], "w", encoding="utf-8") as file:
            file.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
