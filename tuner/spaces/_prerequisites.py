"""Prerequisites: the training runs whose checkpoints trials (or other prerequisites) start from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner.spaces._keys import (
    SpaceError,
    check_key,
    known_key,
    path_keys,
    section_keys,
    typed_mapping,
)

if TYPE_CHECKING:
    from tuner.spaces._space import SearchSpace

__all__ = [
    "Prerequisite",
    "PrerequisiteRun",
    "check_match_keys",
    "dependency_order",
    "parse_prerequisites",
]

_PREREQUISITE_KEYS = ("config", "provides", "requires", "match")


@dataclass(frozen=True)
class Prerequisite:
    """A training run whose result a trial (or another prerequisite) starts from."""

    name: str
    """Name used by ``requires`` and in messages."""
    config: Mapping[str, Any]
    """Fixed TrainConfig values of the run (dotted keys)."""
    provides: str
    """TrainConfig key set to the run's best checkpoint in its consumers."""
    requires: tuple[str, ...] = ()
    """Prerequisites this run starts from."""
    match: tuple[str, ...] = ()
    """Keys copied from each consumer, so there is one run per distinct combination."""

    def config_for(self, consumer: Mapping[str, Any]) -> dict[str, Any]:
        """The run's configuration for one consumer (a trial or a requiring prerequisite)."""
        return {**self.config, **{k: consumer[k] for k in self.match if k in consumer}}

    def match_values(self, consumer: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
        """Identifies the run that ``consumer`` needs; ``()`` when nothing is matched.

        Hashable: list values (``milestones``) become tuples.
        """
        return tuple(
            (k, tuple(v) if isinstance(v, list) else v)
            for k, v in ((k, consumer[k]) for k in self.match if k in consumer)
        )


@dataclass(frozen=True)
class PrerequisiteRun:
    """One concrete run of a prerequisite, in dependency order (see ``prerequisite_runs``)."""

    name: str
    """The prerequisite's name."""
    match: tuple[tuple[str, Any], ...]
    """Values of its ``match`` keys; the key of ``checkpoints[name]`` in the Ray mapping."""
    config: dict[str, Any]
    """Flat configuration, without the keys its own requirements provide."""
    requires: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]
    """``(name, match)`` of the runs whose checkpoints this run needs."""


def parse_prerequisites(
    source: str, value: Any, sections: Mapping[str, Any]
) -> dict[str, Prerequisite]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not value:
        raise SpaceError(source, "prerequisites", "expected a mapping of named prerequisites")
    parsed = {
        str(name): _parse_prerequisite(source, f"prerequisites.{name}", str(name), spec)
        for name, spec in value.items()
    }
    searched = {key: where for where, key in section_keys(sections)}
    for prerequisite in parsed.values():
        where = f"prerequisites.{prerequisite.name}"
        for required in prerequisite.requires:
            if required not in parsed:
                raise SpaceError(source, f"{where}.requires", f"unknown prerequisite {required!r}")
        if prerequisite.provides in searched:
            raise SpaceError(
                source,
                searched[prerequisite.provides],
                f"also provided by prerequisite {prerequisite.name}",
            )
    _check_cycles(source, parsed)
    _check_provided_once(source, parsed)
    return parsed


def _parse_prerequisite(source: str, where: str, name: str, spec: Any) -> Prerequisite:
    if not isinstance(spec, Mapping):
        raise SpaceError(source, where, f"expected a mapping, got {spec!r}")
    for key in spec:
        if key not in _PREREQUISITE_KEYS:
            raise SpaceError(source, f"{where}.{key}", "unknown key")
    if "config" not in spec or "provides" not in spec:
        raise SpaceError(source, where, "needs config and provides")
    provides = spec["provides"]
    if not isinstance(provides, str) or not known_key(provides):
        raise SpaceError(source, f"{where}.provides", f"{provides!r} is not a TrainConfig key")
    if provides not in path_keys():
        raise SpaceError(
            source, f"{where}.provides", f"{provides} is not a path key ({', '.join(path_keys())})"
        )
    lists = {}
    for key in ("requires", "match"):
        items = spec.get(key) or []
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise SpaceError(source, f"{where}.{key}", f"expected a list of names, got {items!r}")
        lists[key] = tuple(items)
    for key in lists["match"]:
        check_key(source, f"{where}.match", key)
    config = typed_mapping(source, f"{where}.config", spec["config"])
    return Prerequisite(name, config, provides, lists["requires"], lists["match"])


def _check_cycles(source: str, prerequisites: Mapping[str, Prerequisite]) -> None:
    def walk(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise SpaceError(source, f"prerequisites.{name}.requires", f"cycle {cycle}")
        for required in prerequisites[name].requires:
            walk(required, (*path, name))

    for name in prerequisites:
        walk(name, ())


def _check_provided_once(source: str, prerequisites: Mapping[str, Prerequisite]) -> None:
    required = {name for p in prerequisites.values() for name in p.requires}
    consumers: list[tuple[str, list[Prerequisite]]] = [
        ("trials", [p for n, p in prerequisites.items() if n not in required])
    ]
    consumers += [(p.name, [prerequisites[r] for r in p.requires]) for p in prerequisites.values()]
    for consumer, providers in consumers:
        keys: dict[str, str] = {}
        for provider in providers:
            if provider.provides in keys:
                raise SpaceError(
                    source,
                    f"prerequisites.{provider.name}.provides",
                    f"{provider.provides} is already provided to {consumer} "
                    f"by {keys[provider.provides]}",
                )
            keys[provider.provides] = provider.name


def dependency_order(prerequisites: Mapping[str, Prerequisite]) -> list[Prerequisite]:
    """Prerequisites with each one before those that require it."""
    ordered: list[Prerequisite] = []

    def visit(name: str) -> None:
        if any(p.name == name for p in ordered):
            return
        for required in prerequisites[name].requires:
            visit(required)
        ordered.append(prerequisites[name])

    for name in prerequisites:
        visit(name)
    return ordered


def check_match_keys(space: SearchSpace) -> None:
    """``match`` keys must be set, and not sampled, in every consumer of the prerequisite."""
    trial_keys = set(space.fixed) | set(space.varying_keys)
    consumers: dict[str, list[tuple[str, set[str]]]] = {
        p.name: [("trials", trial_keys)] for p in space.trial_level_prerequisites()
    }
    for p in space.prerequisites.values():
        for name in p.requires:
            keys = set(p.config) | set(p.match)
            consumers.setdefault(name, []).append((f"prerequisite {p.name}", keys))
    for prerequisite in space.prerequisites.values():
        where = f"prerequisites.{prerequisite.name}.match"
        for key in prerequisite.match:
            if key in space.sample and prerequisite.name in consumers:
                raise SpaceError(space.source, where, f"{key} is sampled; match fixed or grid keys")
            for consumer, keys in consumers.get(prerequisite.name, []):
                if key not in keys and key not in space.sample:
                    raise SpaceError(space.source, where, f"{key} is not set by the {consumer}")
