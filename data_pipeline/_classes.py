"""The 61 GTEA61 class names and the subsets the synthetic generator uses.

A name is ``verb_object[,object...]``; names contain commas, so they are never split on ``,``.
"""

from __future__ import annotations

import functools

__all__ = [
    "GTEA61_CLASSES",
    "choose_classes",
    "object_of",
    "objects_by_priority",
    "partner",
    "verb_of",
]

GTEA61_CLASSES = (
    *(f"close_{o}" for o in ("chocolate", "coffee", "honey", "jam", "ketchup")),
    *(f"close_{o}" for o in ("mayonnaise", "mustard", "peanut", "sugar", "water")),
    "fold_bread",
    *(f"open_{o}" for o in ("cheese", "chocolate", "coffee", "honey", "jam", "ketchup")),
    *(f"open_{o}" for o in ("mayonnaise", "mustard", "peanut", "sugar", "tea", "water")),
    "pour_chocolate,bread",
    "pour_coffee,spoon,cup",
    "pour_honey,bread",
    "pour_honey,cup",
    "pour_ketchup,hotdog,bread",
    "pour_mayonnaise,cheese,bread",
    "pour_mustard,cheese,bread",
    "pour_mustard,hotdog,bread",
    "pour_sugar,spoon,cup",
    "pour_water,cup",
    "put_bread,bread",
    "put_bread,cheese,bread",
    "put_cheese,bread",
    "put_hotdog,bread",
    "scoop_coffee,spoon",
    "scoop_jam,spoon",
    "scoop_peanut,spoon",
    "scoop_sugar,spoon",
    "shake_tea,cup",
    "spread_jam,spoon,bread",
    "spread_peanut,spoon,bread",
    "stir_spoon,cup",
    *(f"take_{o}" for o in ("bread", "cheese", "chocolate", "coffee", "cup", "honey")),
    *(f"take_{o}" for o in ("hotdog", "jam", "ketchup", "mayonnaise", "mustard", "peanut")),
    *(f"take_{o}" for o in ("spoon", "sugar", "tea", "water")),
)
"""Sorted, so a name's position is its class index in the full dataset."""

# Small subsets take these first: two open/close pairs, every verb, several comma names.
_FIRST = (
    "open_coffee",
    "close_coffee",
    "pour_coffee,spoon,cup",
    "take_bread",
    "open_jam",
    "close_jam",
    "stir_spoon,cup",
    "scoop_jam,spoon",
    "shake_tea,cup",
    "spread_peanut,spoon,bread",
    "fold_bread",
    "put_cheese,bread",
)


def verb_of(name: str) -> str:
    return name.split("_", 1)[0]


def object_of(name: str) -> str:
    """Everything after the verb: ``coffee,spoon,cup`` for ``pour_coffee,spoon,cup``."""
    return name.split("_", 1)[1]


def partner(name: str) -> str | None:
    """``close_X`` for ``open_X`` and back, when both are GTEA61 classes."""
    verb, obj = verb_of(name), object_of(name)
    other = {"open": "close", "close": "open"}.get(verb)
    candidate = f"{other}_{obj}" if other else None
    return candidate if candidate in GTEA61_CLASSES else None


def _priority() -> list[str]:
    rest = [n for n in GTEA61_CLASSES if n not in _FIRST]
    return list(_FIRST) + rest


@functools.cache
def objects_by_priority() -> tuple[str, ...]:
    """Distinct object strings in the order small subsets take their classes."""
    return tuple(dict.fromkeys(object_of(name) for name in _priority()))


def choose_classes(n: int) -> tuple[str, ...]:
    """``n`` real class names (3..61), sorted, always with open/close pairs and comma names.

    An ``open_X`` or ``close_X`` enters only together with its partner, so every reversible
    class in the subset has its time-reversed twin.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 3 <= n <= len(GTEA61_CLASSES):
        raise ValueError(f"classes: an integer from 3 to {len(GTEA61_CLASSES)}, got {n!r}")
    chosen: list[str] = []
    for name in _priority():
        if name in chosen:
            continue
        group = [name] + ([p] if (p := partner(name)) else [])
        if len(chosen) + len(group) <= n:
            chosen.extend(group)
        if len(chosen) == n:
            break
    return tuple(sorted(chosen))
