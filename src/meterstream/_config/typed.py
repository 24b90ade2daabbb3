"""The typed keywords of ``configure()`` and ``MeterClient()``, generated from the declarations.

Run ``python -m meterstream._config.typed`` after adding or changing a
setting: it rewrites ``_config/keywords.py``, a ``TypedDict`` with one key
per setting, which ``configure(**settings: Unpack[SettingKeywords])`` and
``MeterClient(...)`` take, so that an editor completes the settings and a
type checker refuses ``batch_sise=10`` or ``batch_size="10"``. A test fails
while the file is out of date. The settings themselves stay declared once,
in ``_config/settings.py``.
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from pathlib import Path
from typing import Optional

from meterstream._config.settings import SETTINGS, Settings

__all__ = ["PATH", "keyword_type", "source"]

#: The generated module.
PATH = Path(__file__).with_name("keywords.py")

#: What a keyword takes where it is more than what the settings keep.
_ACCEPTS = {
    "frozenset[str]": "Union[str, Iterable[str]]",
    "tuple[str, ...]": "Union[str, Sequence[str]]",  # destinations
    "dict[str, str]": "Union[str, Mapping[str, str]]",
    "dict[str, tuple[Optional[str], Optional[str]]]": "Union[str, Mapping[str, Mapping[str, str]]]",
    "Optional[DeliveryErrorCallback]": "Union[str, DeliveryErrorCallback]",
    "Optional[Callable[[Any], None]]": "Union[str, Callable[[Any], None]]",
    "Optional[bool]": "Union[bool, str]",  # "auto"
}


def keyword_type(annotation: str) -> str:
    """The type a keyword takes for a setting kept as *annotation* (None: not given)."""
    accepted = _ACCEPTS.get(annotation, annotation)
    if accepted.startswith("Optional[") or accepted == "Any":
        return accepted
    return f"Optional[{accepted}]"


def source() -> str:
    """The text of ``_config/keywords.py``."""
    kept = {field.name: str(field.type) for field in dataclasses.fields(Settings)}
    lines = [
        '"""The keywords of ``configure()`` and ``MeterClient()``, one per setting.',
        "",
        "Generated from the declarations in ``_config/settings.py`` by",
        "``python -m meterstream._config.typed``; do not edit.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from collections.abc import Iterable, Mapping, Sequence",
        "from typing import Any, Callable, Optional, TypedDict, Union",
        "",
        "from meterstream._config.parsing import DeliveryErrorCallback",
        "",
        '__all__ = ["SettingKeywords"]',
        "",
        "",
        "class SettingKeywords(TypedDict, total=False):",
        '    """Every setting of the configuration reference, as a keyword; None: not given."""',
        "",
    ]
    for declared in SETTINGS:
        lines.append(f"    {declared.name}: {keyword_type(kept[declared.name])}")
        lines += _docstring(declared.doc)
    return "\n".join(lines) + "\n"


def _docstring(doc: str) -> list[str]:
    """The reference's line for a setting as the docstring of its key, wrapped."""
    text = doc.replace("\\", "\\\\").replace('"""', "'''")
    text = text[:1].upper() + text[1:]
    wrapped = textwrap.wrap(text, width=88, break_on_hyphens=False, break_long_words=False)
    if len(wrapped) == 1:
        return [f'    """{wrapped[0]}"""']
    return ['    """' + wrapped[0], *(f"    {line}" for line in wrapped[1:]), '    """']


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        print("usage: python -m meterstream._config.typed")
        return 2
    text = source()
    if not PATH.exists() or PATH.read_text(encoding="utf-8") != text:
        PATH.write_text(text, encoding="utf-8")
        print(f"rewrote {PATH.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
