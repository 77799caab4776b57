"""Keys of a search space: their kinds (derived from ``TrainConfig``), value checks, errors."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from tuner.hints import did_you_mean
from tuner.training.checks import is_number
from tuner.training.config import (
    TrainConfig,
    core_keys,
    nest_config,
    registered_options,
)
from tuner.training.recipes import RECIPES

__all__ = [
    "SEED",
    "SpaceError",
    "as_float",
    "check_key",
    "check_unique",
    "describe",
    "flat_mapping",
    "is_number",
    "key_kind",
    "known_key",
    "nest_config",
    "normalize_value",
    "path_keys",
    "section_keys",
    "typed_mapping",
    "unknown_key_message",
]

SEED = "seed"
"""The key a space's ``repeats`` varies."""


class SpaceError(ValueError):
    """A search-space file that cannot be used; the message names the file and the key."""

    def __init__(self, source: str, key: str, message: str) -> None:
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")
        self.source = source
        self.key = key


def _kind_of(hint: Any) -> tuple[str, bool]:
    """``(kind, optional)`` of a dataclass annotation: int, float, str, bool, int_list, str_list."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = type(None) in typing.get_args(hint)
    if optional and len(args) == 1:
        hint = args[0]
    if typing.get_origin(hint) is tuple:
        return f"{typing.get_args(hint)[0].__name__}_list", optional
    if set(args) == {int, str}:
        return "int_or_auto", optional  # checkpoint_every: a count or ``auto``
    return hint.__name__, optional


def _core_key_kinds() -> dict[str, tuple[str, bool]]:
    kinds: dict[str, tuple[str, bool]] = {}
    hints = typing.get_type_hints(TrainConfig)
    for name in core_keys():
        if name in ("stage1", "alpha"):
            for sub, sub_hint in typing.get_type_hints(hints[name]).items():
                kinds[f"{name}.{sub}"] = _kind_of(sub_hint)
        else:
            kinds[name] = _kind_of(hints[name])
    kinds["stage"] = ("stage", False)  # "1", "2", "both"; YAML writes the first two as ints
    return kinds


_CORE_KINDS = _core_key_kinds()


def _key_kinds() -> dict[str, tuple[str, bool]]:
    """Every key's ``(kind, optional)``: the core keys', then the registered options' (a recipe
    registered after this module was imported adds its keys)."""
    options = {name: _kind_of(option.type) for name, option in registered_options().items()}
    return {**_CORE_KINDS, **options}


def known_key(key: str) -> bool:
    """Whether ``key`` (dotted for nested ones: ``alpha.ms``) is a TrainConfig key."""
    return key in _key_kinds()


def unknown_key_message(key: str) -> str:
    """``unknown key`` with the closest known key, if one is close."""
    hint = did_you_mean(key, _key_kinds())
    return f"unknown key ({hint})" if hint else "unknown key"


def path_keys() -> tuple[str, ...]:
    """Keys a prerequisite can provide: paths of checkpoints."""
    return tuple(k for k in _key_kinds() if k.endswith("_checkpoint"))


def key_kind(key: str) -> str:
    """The value kind of a (dotted) TrainConfig key: int, float, str, bool, stage, *_list."""
    return _key_kinds()[key][0]


def as_float(value: Any) -> float | None:
    """A number, or a numeric string (YAML 1.1 reads ``1e-4`` as text), as a float."""
    if is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def check_key(source: str, where: str, key: Any) -> str:
    if not isinstance(key, str) or key not in _key_kinds():
        where = f"{where}.{key}" if where else str(key)
        raise SpaceError(source, where, unknown_key_message(str(key)))
    return key


def normalize_value(source: str, where: str, key: str, value: Any) -> Any:
    """Check ``value`` against the kind of ``key``; floats and stages come back normalised."""
    kind, optional = _key_kinds()[key]
    if value is None:
        if optional:
            return None
        raise SpaceError(source, where, "must not be null")
    if kind == "float" and as_float(value) is not None:
        return as_float(value)
    if kind == "int" and is_number(value) and isinstance(value, int):
        return value
    counted = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if kind == "int_or_auto" and (value == "auto" or counted):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "stage" and value in (1, 2, "1", "2", "both") and not isinstance(value, bool):
        return str(value)
    if kind == "str" and isinstance(value, str):
        if key == "model" and value not in RECIPES:
            raise SpaceError(
                source, where, f"unknown model {value!r} (known: {', '.join(RECIPES)})"
            )
        return value
    if kind.endswith("_list") and isinstance(value, list):
        item = int if kind == "int_list" else str
        if all(isinstance(v, item) and not isinstance(v, bool) for v in value):
            return list(value)
    expected = {
        "int_list": "a list of integers",
        "str_list": "a list of strings",
        "int_or_auto": "auto or an integer >= 1",
    }.get(kind, kind)
    if kind == "stage":
        expected = "1, 2 or both"
    raise SpaceError(source, where, f"expected {expected}, got {value!r}")


def flat_mapping(source: str, where: str, value: Any) -> dict[str, Any]:
    """A mapping of TrainConfig keys; ``alpha: {ms: 1}`` and ``alpha.ms: 1`` are both accepted."""
    if not isinstance(value, Mapping):
        raise SpaceError(source, where, f"expected a mapping, got {value!r}")
    flat: dict[str, Any] = {}
    for key, item in value.items():
        if key in ("alpha", "stage1") and isinstance(item, Mapping):
            for sub, sub_item in item.items():
                flat[check_key(source, where, f"{key}.{sub}")] = sub_item
        else:
            flat[check_key(source, where, key)] = item
    return flat


def typed_mapping(source: str, where: str, value: Any) -> dict[str, Any]:
    return {
        key: normalize_value(source, f"{where}.{key}", key, item)
        for key, item in flat_mapping(source, where, value).items()
    }


def describe(values: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={json.dumps(v)}" for k, v in values.items())


def check_unique(source: str, where: str, values: Sequence[Any]) -> None:
    seen: list[Any] = []
    for value in values:
        if value in seen:
            raise SpaceError(source, where, f"duplicate value {json.dumps(value)}")
        seen.append(value)


def section_keys(sections: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``(location, key)`` of every key the space sets, in file order."""
    for key in sections["fixed"]:
        yield f"fixed.{key}", key
    for key in sections["points"][0] if sections["points"] else ():
        yield f"points[0].{key}", key
    for section in ("grid", "sample"):
        for key in sections[section]:
            yield f"{section}.{key}", key
