"""A griffe extension for the API reference: the docstrings' reST, as Markdown.

The docstrings are written for Python's own tools (``help()``, IDEs), with
Sphinx roles (``:class:`Call```) and literal blocks (``Example::``).
mkdocstrings renders Markdown: this turns a role into inline code and ``::``
into ``:`` before the docstrings are parsed. mkdocs.yml loads it.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|meth|func|attr|exc|mod|data|obj):`~?([^`]+)`")
LITERAL = re.compile(r"(?m)^(\s*)Example::$|(\S)::$")


def _literal(match: re.Match[str]) -> str:
    if match.group(2) is not None:
        return match.group(2) + ":"
    # Not "Example:": Google style would read that as an examples section.
    return match.group(1) + "For example:"


def markdown(text: str) -> str:
    """*text* with Sphinx roles as inline code and ``::`` as ``:``."""
    return LITERAL.sub(_literal, ROLE.sub(r"`\1`", text))


class SphinxRoles(griffe.Extension):
    """Rewrites each docstring once it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
