"""Sampled keys of a search space: ``uniform``, ``loguniform``, ``randint`` and ``choice``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuner.spaces._keys import (
    SpaceError,
    as_float,
    check_unique,
    is_number,
    key_kind,
    normalize_value,
)

__all__ = ["DISTRIBUTIONS", "Distribution", "parse_distribution"]

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")


@dataclass(frozen=True)
class Distribution:
    """A sampled key: ``uniform``/``loguniform`` [low, high], ``randint`` low..high, ``choice``."""

    kind: str
    """One of ``DISTRIBUTIONS``."""
    low: float | int | None = None
    """Lower bound (uniform, loguniform, randint)."""
    high: float | int | None = None
    """Upper bound; inclusive for ``randint``."""
    choices: tuple[Any, ...] = ()
    """Values of a ``choice``."""

    def to_dict(self) -> dict[str, Any]:
        """The YAML/JSON form, e.g. ``{"loguniform": [1e-05, 0.001]}``."""
        if self.kind == "choice":
            return {"choice": list(self.choices)}
        return {self.kind: [self.low, self.high]}

    def candidates(self) -> list[Any]:
        """Representative values (bounds, a middle value, every choice) used for validation."""
        if self.kind == "choice":
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if self.kind == "randint":
            return sorted({int(self.low), (int(self.low) + int(self.high)) // 2, int(self.high)})
        if self.kind == "loguniform":
            return [self.low, math.sqrt(self.low * self.high), self.high]
        return [self.low, (self.low + self.high) / 2, self.high]

    def contains(self, value: Any) -> bool:
        """Whether ``value`` can be drawn from this distribution."""
        if self.kind == "choice":
            return value in self.choices
        assert self.low is not None and self.high is not None
        if self.kind == "randint" and (not isinstance(value, int) or isinstance(value, bool)):
            return False
        return is_number(value) and self.low <= value <= self.high


def parse_distribution(source: str, where: str, key: str, spec: Any) -> Distribution:
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise SpaceError(
            source, where, f"expected one of {', '.join(DISTRIBUTIONS)} as {{kind: ...}}"
        )
    kind, args = next(iter(spec.items()))
    if kind not in DISTRIBUTIONS:
        raise SpaceError(source, f"{where}.{kind}", "unknown distribution")
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise SpaceError(source, f"{where}.choice", "expected a non-empty list of values")
        choices = [
            normalize_value(source, f"{where}.choice[{i}]", key, v) for i, v in enumerate(args)
        ]
        check_unique(source, f"{where}.choice", choices)
        return Distribution("choice", choices=tuple(choices))
    return _parse_bounds(source, f"{where}.{kind}", key, kind, args)


def _parse_bounds(source: str, where: str, key: str, kind: str, args: Any) -> Distribution:
    wanted = "int" if kind == "randint" else "float"
    if key_kind(key) != wanted:
        raise SpaceError(source, where, f"{kind} needs a {wanted} key; {key} is {key_kind(key)}")
    if not isinstance(args, list) or len(args) != 2:
        raise SpaceError(source, where, "expected [low, high]")
    if kind == "randint":
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in args):
            raise SpaceError(source, where, f"bounds must be integers, got {args!r}")
        low, high = args
    else:
        low, high = (as_float(v) for v in args)
        if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
            raise SpaceError(source, where, f"bounds must be finite numbers, got {args!r}")
    if low >= high:
        raise SpaceError(source, where, f"low must be below high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise SpaceError(source, where, f"loguniform needs low > 0, got {low}")
    return Distribution(kind, low=low, high=high)
