"""The "did you mean" part of an error message about a misspelt name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["close_match", "did_you_mean"]


def close_match(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``word``, or ``None`` when none is close."""
    found = difflib.get_close_matches(str(word), list(choices), n=1)
    return found[0] if found else None


def did_you_mean(word: str, choices: Iterable[str], *, listing: bool = False) -> str:
    """``"did you mean X?"`` for the closest choice; otherwise ``"known: a, b, c"`` with
    ``listing``, else an empty string."""
    options = list(choices)
    match = close_match(word, options)
    if match is not None:
        return f"did you mean {match}?"
    return f"known: {', '.join(options)}" if listing else ""
