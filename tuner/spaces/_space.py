"""The search space: its sections, its expansion into trials and command-line overrides."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tuner.hints import did_you_mean
from tuner.spaces._distributions import Distribution, parse_distribution
from tuner.spaces._keys import (
    SEED,
    SpaceError,
    check_unique,
    flat_mapping,
    is_number,
    known_key,
    normalize_value,
    section_keys,
    typed_mapping,
    unknown_key_message,
)
from tuner.spaces._prerequisites import (
    Prerequisite,
    PrerequisiteRun,
    dependency_order,
    parse_prerequisites,
)
from tuner.spaces._scheduler import (
    ALGORITHMS,
    SchedulerSettings,
    drop_unused_settings,
    fill_asha_defaults,
    parse_scheduler,
)
from tuner.spaces._sharing import SharingPlan, plan_sharing
from tuner.spaces._validation import validate_trials
from tuner.training.config import TrainConfig, flatten_config, parse_overrides

__all__ = ["FOLD_KEYS", "Resources", "SearchSpace", "parse_space"]

FOLD_KEYS = ("train_users", "val_users")
"""Keys a cross-validation fold sets."""

_TOP_KEYS = (
    "report",
    "description",
    "reference",
    "fixed",
    "grid",
    "points",
    "sample",
    "repeats",
    "folds",
    "scheduler",
    "resources",
    "prerequisites",
    "share_prefixes",
)


@dataclass(frozen=True)
class Resources:
    """Resources each trial reserves."""

    cpus: float = 1.0
    """CPU cores (fractions allowed)."""
    gpus: float = 0.0
    """GPUs: a fraction such as 0.5 shares one GPU between trials."""


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space. Build it with :func:`load_space` or :func:`parse_space`."""

    name: str
    """File stem; also the Optuna study name."""
    source: str
    """File the space was read from, as shown in messages."""
    report: str | None
    """Figure or section of the report it reproduces."""
    description: str | None
    """Free text."""
    reference: Any
    """The report's reference results (documentation only)."""
    fixed: dict[str, Any]
    """Keys fixed in every trial."""
    grid: dict[str, list[Any]]
    """Grid axes; every combination is a trial."""
    points: list[dict[str, Any]]
    """Rows of values that vary together (same keys in each)."""
    sample: dict[str, Distribution]
    """Sampled keys."""
    repeats: int | None
    """Seeds 0..repeats-1 as a ``seed`` axis."""
    scheduler: SchedulerSettings
    """Searcher and scheduler settings, defaults filled in."""
    resources: Resources
    """Per-trial resources."""
    prerequisites: dict[str, Prerequisite]
    """Named prerequisite runs."""
    document: dict[str, Any] = field(repr=False, compare=False)
    """Canonical form of the file (flat keys, explicit settings only), used for overrides."""
    warnings: tuple[str, ...] = ()
    """Valid settings that depart from the report (``config_warnings``), each with its trials."""
    folds: list[dict[str, list[str]]] = field(default_factory=list)
    """Cross-validation folds (``train_users``, ``val_users``), an axis of every trial; empty:
    the configuration's split (the report's: train on S1, S3, S4, validate on S2)."""
    trial_configs: tuple[TrainConfig, ...] = field(default=(), repr=False, compare=False)
    """Each cell's configuration, in the order of :meth:`expand` (sampled keys at a first
    candidate, prerequisite keys as placeholders): computed once, when the space is parsed."""
    prerequisite_configs: tuple[TrainConfig, ...] = field(default=(), repr=False, compare=False)
    """Each prerequisite run's configuration (:meth:`prerequisite_runs`), computed then too."""
    share_prefixes: bool = True
    """Run the epochs that trials of a grid compute identically once
    (:mod:`tuner.spaces._sharing`);
    ``share_prefixes: false`` in the file runs every trial from its first epoch."""

    def sharing_plan(self) -> SharingPlan | None:
        """The prefix-sharing plan of the trials, in search order; ``None`` when the space does
        not share: ``share_prefixes: false``, sampled keys or a population-based scheduler."""
        if not self.share_prefixes or self.is_sampled or not self.scheduler.shares_prefixes:
            return None
        if "_sharing_plan" not in self.__dict__:  # computed once per space
            samples = self.scheduler.num_samples
            cells = self.expand() * samples
            prerequisites = self.trial_level_prerequisites()
            groups = [
                tuple((p.name, tuple(_hashable(c.get(k)) for k in p.match)) for p in prerequisites)
                for c in cells
            ]
            plan = plan_sharing(list(self.trial_configs) * samples, groups)
            object.__setattr__(self, "_sharing_plan", plan)
        plan = self.__dict__["_sharing_plan"]
        assert isinstance(plan, SharingPlan)
        return plan

    @property
    def is_sampled(self) -> bool:
        """Whether some key is drawn from a distribution."""
        return bool(self.sample)

    @property
    def varying_keys(self) -> list[str]:
        """Keys that change between trials, in file order (``seed`` last)."""
        keys = list(self.points[0]) if self.points else []
        keys += [*self.grid, *self.sample]
        keys += list(FOLD_KEYS) if self.folds else []
        return keys + ([SEED] if self.repeats else [])

    @property
    def trial_count(self) -> int:
        """Trials the search runs (samples times grid cells for sampled algorithms)."""
        if self.scheduler.uses_optuna:
            return self.scheduler.num_samples
        return self.scheduler.num_samples * len(self.expand())

    def expand(self) -> list[dict[str, Any]]:
        """Every grid cell: fixed keys plus one point, one grid combination and one seed.

        For a grid space these are the trials, ``points x grid product x repeats`` of them. For a
        sampled space each cell is sampled ``num_samples`` times (Optuna: one cell, the fixed keys).
        Keys are flat (``alpha.ms``); values are YAML/JSON plain (lists, not tuples).
        """
        axes: list[list[dict[str, Any]]] = []
        if self.points:
            axes.append(self.points)
        axes += [[{key: value} for value in values] for key, values in self.grid.items()]
        if self.folds:
            axes.append([dict(fold) for fold in self.folds])
        if self.repeats:
            axes.append([{SEED: seed} for seed in range(self.repeats)])
        cells = []
        for combo in itertools.product(*axes):
            cell = dict(self.fixed)
            for part in combo:
                cell.update(part)
            cells.append(cell)
        return cells

    def trial_level_prerequisites(self) -> list[Prerequisite]:
        """Prerequisites whose key goes into the trials (those no other prerequisite requires)."""
        required = {name for p in self.prerequisites.values() for name in p.requires}
        return [p for name, p in self.prerequisites.items() if name not in required]

    def prerequisite_runs(self) -> list[PrerequisiteRun]:
        """Every distinct prerequisite run, each after the runs it requires."""
        runs: dict[tuple[str, tuple[tuple[str, Any], ...]], PrerequisiteRun] = {}
        consumers = {p.name: self.expand() for p in self.trial_level_prerequisites()}
        for prerequisite in reversed(dependency_order(self.prerequisites)):
            for consumer in consumers.get(prerequisite.name, []):
                match = prerequisite.match_values(consumer)
                if (prerequisite.name, match) in runs:
                    continue
                config = prerequisite.config_for(consumer)
                needs = tuple(
                    (name, self.prerequisites[name].match_values(config))
                    for name in prerequisite.requires
                )
                runs[(prerequisite.name, match)] = PrerequisiteRun(
                    prerequisite.name, match, config, needs
                )
                for name in prerequisite.requires:
                    consumers.setdefault(name, []).append(config)
        order = {p.name: i for i, p in enumerate(dependency_order(self.prerequisites))}
        return sorted(runs.values(), key=lambda run: order[run.name])

    def with_overrides(
        self,
        *,
        scheduler: str | None = None,
        num_samples: int | None = None,
        max_concurrent: int | None = None,
        cpus_per_trial: float | None = None,
        gpus_per_trial: float | None = None,
        set_values: Iterable[str] | Mapping[str, Any] = (),
    ) -> SearchSpace:
        """A copy with command-line overrides applied and validated again.

        ``set_values`` (``key=value`` strings or a mapping) fixes keys in every trial: each key
        leaves the grid, points and distributions; fixing ``seed`` drops ``repeats``; fixing a key
        that a prerequisite provides (e.g. ``init_checkpoint``) replaces that prerequisite.
        Changing the algorithm drops the settings the new one does not use.
        """
        doc = json.loads(json.dumps(self.document))
        if set_values:
            _apply_set_values(doc, _parse_set_values(set_values))
        settings = doc.setdefault("scheduler", {})
        if scheduler is not None:
            if scheduler not in ALGORITHMS:
                raise SpaceError(f"--scheduler {scheduler}", "", "unknown scheduler")
            settings["algorithm"] = scheduler
            drop_unused_settings(settings)
        for key, count in (("num_samples", num_samples), ("max_concurrent", max_concurrent)):
            if count is not None:
                settings[key] = count
        resources = doc.setdefault("resources", {})
        for key, amount in (("cpus", cpus_per_trial), ("gpus", gpus_per_trial)):
            if amount is not None:
                resources[key] = amount
        return parse_space(doc, source=self.source, name=self.name)


def parse_space(document: Any, source: str = "<string>", name: str | None = None) -> SearchSpace:
    """Validate a loaded YAML document; ``source`` names the file in error messages."""
    if not isinstance(document, Mapping):
        raise SpaceError(source, "", "expected a mapping at the top of the file")
    for key in document:
        if key not in _TOP_KEYS:
            hint = did_you_mean(str(key), _TOP_KEYS)
            raise SpaceError(source, str(key), "unknown key" + (f" ({hint})" if hint else ""))
    sections = _parse_sections(source, document)
    _check_overlaps(source, sections)
    prerequisites = parse_prerequisites(source, document.get("prerequisites"), sections)
    if sections["folds"]:
        prerequisites = _match_folds(prerequisites)
    settings = parse_scheduler(source, document.get("scheduler"), sections)
    space = SearchSpace(
        name=name or Path(source).stem,
        source=source,
        report=_optional_text(source, "report", document.get("report")),
        description=_optional_text(source, "description", document.get("description")),
        reference=document.get("reference"),
        fixed=sections["fixed"],
        grid=sections["grid"],
        points=sections["points"],
        sample=sections["sample"],
        repeats=sections["repeats"],
        folds=sections["folds"],
        scheduler=settings,
        resources=_parse_resources(source, document.get("resources")),
        prerequisites=prerequisites,
        document=_canonical_document(document, sections, prerequisites, settings),
        share_prefixes=_parse_share_prefixes(source, document.get("share_prefixes")),
    )
    checked = validate_trials(space)
    return replace(
        space,
        scheduler=fill_asha_defaults(source, settings, checked.max_epochs),
        warnings=checked.warnings,
        trial_configs=checked.trial_configs,
        prerequisite_configs=checked.prerequisite_configs,
    )


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _parse_share_prefixes(source: str, value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, bool):
        raise SpaceError(source, "share_prefixes", f"expected true or false, got {value!r}")
    return value


def _optional_text(source: str, key: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise SpaceError(source, key, f"expected text, got {value!r}")
    return value


def _parse_sections(source: str, document: Mapping[str, Any]) -> dict[str, Any]:
    fixed = typed_mapping(source, "fixed", document.get("fixed") or {})
    grid: dict[str, list[Any]] = {}
    for key, values in flat_mapping(source, "grid", document.get("grid") or {}).items():
        if not isinstance(values, list) or not values:
            raise SpaceError(source, f"grid.{key}", "expected a non-empty list of values")
        grid[key] = [
            normalize_value(source, f"grid.{key}[{i}]", key, v) for i, v in enumerate(values)
        ]
        check_unique(source, f"grid.{key}", grid[key])
    sample = {
        key: parse_distribution(source, f"sample.{key}", key, spec)
        for key, spec in flat_mapping(source, "sample", document.get("sample") or {}).items()
    }
    repeats = document.get("repeats")
    if repeats is not None and (not isinstance(repeats, int) or isinstance(repeats, bool)):
        raise SpaceError(source, "repeats", f"expected an integer >= 1, got {repeats!r}")
    if repeats is not None and repeats < 1:
        raise SpaceError(source, "repeats", f"expected an integer >= 1, got {repeats!r}")
    points = _parse_points(source, document.get("points"))
    folds = _parse_folds(source, document.get("folds"))
    return {
        "fixed": fixed,
        "grid": grid,
        "points": points,
        "sample": sample,
        "repeats": repeats,
        "folds": folds,
    }


def _parse_folds(source: str, value: Any) -> list[dict[str, list[str]]]:
    """``folds: {leave_one_user_out: [S1, S2, S3, S4]}``: one fold per user, trained on the
    others and validated on it."""
    if value is None:
        return []
    if not isinstance(value, Mapping) or list(value) != ["leave_one_user_out"]:
        raise SpaceError(source, "folds", "expected {leave_one_user_out: [users]}")
    users = value["leave_one_user_out"]
    where = "folds.leave_one_user_out"
    if not isinstance(users, list) or len(users) < 2 or not all(isinstance(u, str) for u in users):
        raise SpaceError(source, where, f"expected a list of two or more users, got {users!r}")
    check_unique(source, where, users)
    return [{"train_users": [u for u in users if u != user], "val_users": [user]} for user in users]


def _match_folds(prerequisites: dict[str, Prerequisite]) -> dict[str, Prerequisite]:
    """Each fold's trials start from prerequisites trained on that fold's users."""
    return {
        name: replace(p, match=tuple(dict.fromkeys((*p.match, *FOLD_KEYS))))
        for name, p in prerequisites.items()
    }


def _parse_points(source: str, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not value:
        raise SpaceError(source, "points", "expected a non-empty list of mappings")
    points = [typed_mapping(source, f"points[{i}]", p) for i, p in enumerate(value)]
    for i, point in enumerate(points):
        if not point:
            raise SpaceError(source, f"points[{i}]", "empty point")
        if set(point) != set(points[0]):
            raise SpaceError(
                source,
                f"points[{i}]",
                f"keys {sorted(point)} differ from points[0] {sorted(points[0])}",
            )
    check_unique(source, "points", points)
    return points


def _check_overlaps(source: str, sections: Mapping[str, Any]) -> None:
    seen: dict[str, str] = {}
    for where, key in section_keys(sections):
        if key in seen:
            raise SpaceError(source, where, f"also set in {seen[key]}; a key is fixed or searched")
        seen[key] = where
    if sections["repeats"] and SEED in seen:
        raise SpaceError(source, "repeats", f"seeds come from repeats but {seen[SEED]} sets seed")
    for key in FOLD_KEYS if sections["folds"] else ():
        if key in seen:
            raise SpaceError(source, seen[key], f"the folds set {key}; remove it here")


def _parse_resources(source: str, value: Any) -> Resources:
    if value is None:
        return Resources()
    if not isinstance(value, Mapping):
        raise SpaceError(source, "resources", f"expected a mapping, got {value!r}")
    for key in value:
        if key not in ("cpus", "gpus"):
            raise SpaceError(source, f"resources.{key}", "unknown key (known: cpus, gpus)")
    cpus, gpus = value.get("cpus", 1.0), value.get("gpus", 0.0)
    if not is_number(cpus) or cpus <= 0:
        raise SpaceError(source, "resources.cpus", f"expected a number > 0, got {cpus!r}")
    if not is_number(gpus) or gpus < 0:
        raise SpaceError(source, "resources.gpus", f"expected a number >= 0, got {gpus!r}")
    if gpus > 1 and gpus != int(gpus):
        raise SpaceError(source, "resources.gpus", f"a fraction must be <= 1, got {gpus!r}")
    return Resources(cpus=float(cpus), gpus=float(gpus))


def _canonical_document(
    document: Mapping[str, Any],
    sections: Mapping[str, Any],
    prerequisites: Mapping[str, Prerequisite],
    settings: SchedulerSettings,
) -> dict[str, Any]:
    """The file with flat keys and typed values; ``with_overrides`` edits and re-parses it."""
    doc: dict[str, Any] = {
        k: document[k] for k in ("report", "description", "reference") if k in document
    }
    doc["fixed"] = dict(sections["fixed"])
    for key in ("grid", "points"):
        if sections[key]:
            doc[key] = sections[key]
    if sections["sample"]:
        doc["sample"] = {k: d.to_dict() for k, d in sections["sample"].items()}
    if sections["repeats"]:
        doc["repeats"] = sections["repeats"]
    if sections["folds"]:
        doc["folds"] = dict(document["folds"])
    for key in ("scheduler", "resources"):
        if document.get(key):
            doc[key] = dict(document[key])
    if "share_prefixes" in document:
        doc["share_prefixes"] = document["share_prefixes"]
    if settings.points_to_evaluate:
        doc["scheduler"]["points_to_evaluate"] = list(settings.points_to_evaluate)
    if prerequisites:
        doc["prerequisites"] = {
            p.name: {
                "config": dict(p.config),
                "provides": p.provides,
                "requires": list(p.requires),
                "match": list(p.match),
            }
            for p in prerequisites.values()
        }
    return json.loads(json.dumps(doc))


def _parse_set_values(values: Iterable[str] | Mapping[str, Any]) -> dict[str, Any]:
    nested = dict(values) if isinstance(values, Mapping) else parse_overrides(values)
    flat = flatten_config(nested)
    for key in flat:
        if not known_key(key):
            raise SpaceError(f"--set {key}", "", unknown_key_message(key))
    # Checked here so that a bad value names the flag rather than the file it is merged into.
    return {key: normalize_value(f"--set {key}", "", key, value) for key, value in flat.items()}


def _apply_set_values(doc: dict[str, Any], values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        doc.setdefault("fixed", {})[key] = value
        doc.get("grid", {}).pop(key, None)
        doc.get("sample", {}).pop(key, None)
        for point in doc.get("points", []):
            point.pop(key, None)
        for point in doc.get("scheduler", {}).get("points_to_evaluate", []):
            point.pop(key, None)
        if key == SEED:
            doc.pop("repeats", None)
        if key in FOLD_KEYS:
            doc.pop("folds", None)
        prerequisites = doc.get("prerequisites", {})
        for name in [n for n, p in prerequisites.items() if p.get("provides") == key]:
            del prerequisites[name]
    points = [p for p in doc.get("points", []) if p]
    unique = [p for i, p in enumerate(points) if p not in points[:i]]
    doc["points"] = unique
    for section in ("grid", "sample", "points", "prerequisites"):
        if not doc.get(section):
            doc.pop(section, None)
