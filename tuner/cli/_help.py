"""Help text from docstrings: the reStructuredText markup the docs render (````egotune x````,
``:mod:`tuner.tune.replay```) as the plain words a terminal should show."""

from __future__ import annotations

import re

__all__ = ["plain_help"]

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain_help(doc: str | None) -> str:
    """``doc`` with roles (``:func:`shlex.join```) and literals (````--data````) as plain text."""
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", doc or ""))
