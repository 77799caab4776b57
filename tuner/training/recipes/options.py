"""The options a recipe declares: the configuration keys of one model family.

Each :class:`Option` is a key of :class:`~tuner.training.config.TrainConfig` with its type, its
default, its check and whether a population search may change it between epochs. A recipe lists
the options its model reads (:attr:`Recipe.options <tuner.training.recipes.base.Recipe.options>`);
an option several families read (``mem_size``, ``flow_stack``) is declared once and listed by
each. Search spaces, ``--set`` flags and the Parquet columns use the same names.

The checks here raise ``ValueError`` whose message starts with the key; the core keys of the
configuration use them too (:mod:`tuner.training.checks`). This module imports nothing of
egotune, so a recipe and the configuration can both import it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LIMIT_REASON",
    "Option",
    "boolean",
    "check_choice",
    "check_int",
    "check_learning_rate",
    "check_path",
    "check_positive",
    "choice",
    "integer",
    "is_number",
    "learning_rate",
    "path",
    "positive",
]

LIMIT_REASON = "a larger one is a typo or would not fit in memory"
MAX_LR = 10.0
"""Largest accepted learning rate: the report's are 1e-4 to 1e-2, and SGD or Adam with a rate
above 10 turns the first loss into infinity."""

Check = Callable[[str, Any], None]


@dataclass(frozen=True)
class Option:
    """One configuration key of a model family (see the module docstring)."""

    name: str
    """The key, as search spaces and ``--set`` write it."""
    default: Any
    """Its value when a configuration does not set it."""
    type: Any
    """Its annotation (``int``, ``float | None``, ``str``, ``bool``, ``tuple[int, ...]``): the
    kind of value a search space accepts, and the coercion the configuration applies (an integer
    or numeric text becomes a float for a float option)."""
    doc: str
    """One sentence for ``egotune spaces keys`` and docs/search-spaces.md."""
    check: Check | None = None
    """Raises ``ValueError`` naming the key when a value is not accepted."""
    mutable: bool = False
    """A population search (PBT, PB2) may change it between epochs: a trial continued from
    another's state takes its own value from the next epoch on."""

    def validate(self, value: Any) -> None:
        if value is None and _optional(self.type):
            return
        if self.check is not None:
            self.check(self.name, value)


def _optional(annotation: Any) -> bool:
    return type(None) in getattr(annotation, "__args__", ())


# -- checks -------------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"{name}: must be one of {', '.join(map(str, options))}; got {value!r}")


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum:,}"
        raise ValueError(f"{name}: must be an integer {bound}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(
            f"{name}: must be an integer from {minimum} to {maximum:,}, got {value:,} "
            f"({LIMIT_REASON})"
        )


def check_positive(name: str, value: Any, allow_zero: bool = False) -> None:
    ok = is_number(value) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: must be a finite number {bound}, got {value!r}")


def check_learning_rate(name: str, value: Any) -> None:
    check_positive(name, value)
    if value > MAX_LR:
        raise ValueError(
            f"{name}: at most {MAX_LR:g} (a larger rate diverges at once), got {value:g}"
        )


def check_path(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: must be a path or null, got {value!r}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: must be true or false, got {value!r}")


# -- check builders, for Option(check=...) ------------------------------------------------


def choice(*choices: Any) -> Check:
    """Accept one of ``choices``."""
    return lambda name, value: check_choice(name, value, choices)


def integer(minimum: int, maximum: int) -> Check:
    """Accept an integer from ``minimum`` to ``maximum``."""
    return lambda name, value: check_int(name, value, minimum, maximum)


def positive(name: str, value: Any) -> None:
    """Accept a finite number > 0."""
    check_positive(name, value)


learning_rate: Check = check_learning_rate
"""Accept a learning rate (or a multiplier of one): finite, > 0, at most 10."""
boolean: Check = check_bool
path: Check = check_path
