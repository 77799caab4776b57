"""Search-space files: loading, validation and expansion into trial configurations.

A search space is a YAML file (format: ``docs/search-spaces.md``) with a closed vocabulary:
``fixed`` values, ``grid`` axes, explicit ``points`` (rows of values that vary together), sampled
distributions (``uniform``, ``loguniform``, ``randint``, ``choice``), ``repeats`` (a ``seed`` axis
0..n-1), a ``scheduler`` block, ``resources`` per trial and named ``prerequisites``. Keys are the
field names of :class:`tuner.config.TrainConfig`, nested ones written ``alpha.ms`` or ``stage1.lr``.

Files are read with ``yaml.safe_load`` and nothing in them is ever evaluated. Every error is a
:class:`SpaceError` whose message starts with the file and the key, e.g.
``search_spaces/x.yaml: grid.lrr: unknown key``. A grid space expands to
``points x grid product x repeats`` trials, each checked with ``TrainConfig.from_dict``.

This module does not import ray; ``tuner._tune_mapping`` turns a space into Ray Tune objects.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import os
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from tuner.config import (
    MODEL_NAMES,
    TrainConfig,
    config_warnings,
    flatten_config,
    parse_overrides,
    yaml_error_text,
)

__all__ = [
    "ALGORITHMS",
    "BUNDLED_SPACES_DIR",
    "DISTRIBUTIONS",
    "METRICS",
    "SPACES_ENV",
    "Distribution",
    "Prerequisite",
    "PrerequisiteRun",
    "Resources",
    "SchedulerSettings",
    "SearchSpace",
    "SpaceError",
    "find_space",
    "key_kind",
    "list_spaces",
    "load_space",
    "nest_config",
    "parse_space",
    "space_dirs",
]

ALGORITHMS = ("grid", "random", "asha", "optuna", "optuna+asha")
METRICS = ("val_acc", "val_loss", "train_acc", "train_loss", "best_val_acc")
"""Metrics a search can optimise: what every trial reports each epoch (``EpochRecord``)."""
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
SPACES_ENV = "EGOTUNE_SPACES"
BUNDLED_SPACES_DIR = Path(__file__).resolve().parents[1] / "search_spaces"

_TOP_KEYS = (
    "report",
    "description",
    "reference",
    "fixed",
    "grid",
    "points",
    "sample",
    "repeats",
    "scheduler",
    "resources",
    "prerequisites",
)
_COMMON_SETTINGS = ("algorithm", "metric", "mode", "num_samples", "max_concurrent", "seed")
_ASHA_SETTINGS = ("grace_period", "reduction_factor", "max_t")
_OPTUNA_SETTINGS = ("points_to_evaluate",)
_PREREQUISITE_KEYS = ("config", "provides", "requires", "match")
_SEED = "seed"


class SpaceError(ValueError):
    """A search-space file that cannot be used; the message names the file and the key."""

    def __init__(self, source: str, key: str, message: str) -> None:
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")
        self.source = source
        self.key = key


# -- key types, derived from TrainConfig ----------------------------------------------------


def _kind_of(hint: Any) -> tuple[str, bool]:
    """``(kind, optional)`` of a dataclass annotation: int, float, str, bool, int_list, str_list."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = type(None) in typing.get_args(hint)
    if optional and len(args) == 1:
        hint = args[0]
    if typing.get_origin(hint) is tuple:
        return f"{typing.get_args(hint)[0].__name__}_list", optional
    return hint.__name__, optional


def _build_key_kinds() -> dict[str, tuple[str, bool]]:
    kinds: dict[str, tuple[str, bool]] = {}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        if name in ("stage1", "alpha"):
            for sub, sub_hint in typing.get_type_hints(hint).items():
                kinds[f"{name}.{sub}"] = _kind_of(sub_hint)
        else:
            kinds[name] = _kind_of(hint)
    kinds["stage"] = ("stage", False)  # "1", "2", "both"; YAML writes the first two as ints
    return kinds


_KEY_KINDS = _build_key_kinds()
# Keys a prerequisite can provide: paths of checkpoints.
_PATH_KEYS = tuple(k for k in _KEY_KINDS if k.endswith("_checkpoint"))


def key_kind(key: str) -> str:
    """The value kind of a (dotted) TrainConfig key: int, float, str, bool, stage, *_list."""
    return _KEY_KINDS[key][0]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_float(value: Any) -> float | None:
    """A number, or a numeric string (YAML 1.1 reads ``1e-4`` as text), as a float."""
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _check_key(source: str, where: str, key: Any) -> str:
    if not isinstance(key, str) or key not in _KEY_KINDS:
        hint = difflib.get_close_matches(str(key), list(_KEY_KINDS), n=1)
        suffix = f" (did you mean {hint[0]}?)" if hint else ""
        raise SpaceError(source, f"{where}.{key}" if where else str(key), "unknown key" + suffix)
    return key


def _normalize_value(source: str, where: str, key: str, value: Any) -> Any:
    """Check ``value`` against the kind of ``key``; floats and stages come back normalised."""
    kind, optional = _KEY_KINDS[key]
    if value is None:
        if optional:
            return None
        raise SpaceError(source, where, "must not be null")
    if kind == "float" and _as_float(value) is not None:
        return _as_float(value)
    if kind == "int" and _is_number(value) and isinstance(value, int):
        return value
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "stage" and value in (1, 2, "1", "2", "both") and not isinstance(value, bool):
        return str(value)
    if kind == "str" and isinstance(value, str):
        if key == "model" and value not in MODEL_NAMES:
            raise SpaceError(
                source, where, f"unknown model {value!r} (known: {', '.join(MODEL_NAMES)})"
            )
        return value
    if kind.endswith("_list") and isinstance(value, list):
        item = int if kind == "int_list" else str
        if all(isinstance(v, item) and not isinstance(v, bool) for v in value):
            return list(value)
    expected = {"int_list": "a list of integers", "str_list": "a list of strings"}.get(kind, kind)
    if kind == "stage":
        expected = "1, 2 or both"
    raise SpaceError(source, where, f"expected {expected}, got {value!r}")


def _flat_mapping(source: str, where: str, value: Any) -> dict[str, Any]:
    """A mapping of TrainConfig keys; ``alpha: {ms: 1}`` and ``alpha.ms: 1`` are both accepted."""
    if not isinstance(value, Mapping):
        raise SpaceError(source, where, f"expected a mapping, got {value!r}")
    flat: dict[str, Any] = {}
    for key, item in value.items():
        if key in ("alpha", "stage1") and isinstance(item, Mapping):
            for sub, sub_item in item.items():
                flat[_check_key(source, where, f"{key}.{sub}")] = sub_item
        else:
            flat[_check_key(source, where, key)] = item
    return flat


def _typed_mapping(source: str, where: str, value: Any) -> dict[str, Any]:
    return {
        key: _normalize_value(source, f"{where}.{key}", key, item)
        for key, item in _flat_mapping(source, where, value).items()
    }


def nest_config(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Turn dotted keys (``alpha.ms``) into the nested mapping ``TrainConfig.from_dict`` takes."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        parent, dot, leaf = key.partition(".")
        if dot:
            nested.setdefault(parent, {})[leaf] = value
        else:
            nested[key] = value
    return nested


def _describe(values: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={json.dumps(v)}" for k, v in values.items())


# -- distributions --------------------------------------------------------------------------


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
        return _is_number(value) and self.low <= value <= self.high


def _parse_distribution(source: str, where: str, key: str, spec: Any) -> Distribution:
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
            _normalize_value(source, f"{where}.choice[{i}]", key, v) for i, v in enumerate(args)
        ]
        _check_unique(source, f"{where}.choice", choices)
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
        low, high = (_as_float(v) for v in args)
        if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
            raise SpaceError(source, where, f"bounds must be finite numbers, got {args!r}")
    if low >= high:
        raise SpaceError(source, where, f"low must be below high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise SpaceError(source, where, f"loguniform needs low > 0, got {low}")
    return Distribution(kind, low=low, high=high)


def _check_unique(source: str, where: str, values: Sequence[Any]) -> None:
    seen: list[Any] = []
    for value in values:
        if value in seen:
            raise SpaceError(source, where, f"duplicate value {json.dumps(value)}")
        seen.append(value)


# -- settings blocks ------------------------------------------------------------------------


@dataclass(frozen=True)
class SchedulerSettings:
    """The searcher/scheduler block; ``None`` means the setting does not apply."""

    algorithm: str = "grid"
    """One of ``ALGORITHMS``."""
    metric: str = "val_acc"
    """Reported metric the search optimises."""
    mode: str = "max"
    """``max`` or ``min``."""
    num_samples: int = 1
    """Samples per grid cell (random, asha) or trials of the study (optuna)."""
    max_concurrent: int | None = None
    """Trials running at once; ``None``: as many as the resources allow."""
    seed: int | None = None
    """Seed of the random searcher or of Optuna's TPE sampler (not used by grid)."""
    grace_period: int | None = None
    """ASHA: epochs a trial runs before it can be stopped."""
    reduction_factor: float | None = None
    """ASHA: fraction 1/eta of trials promoted at each rung."""
    max_t: int | None = None
    """ASHA: last epoch of any trial (on the reported ``epoch``)."""
    points_to_evaluate: tuple[dict[str, Any], ...] = ()
    """Optuna: configurations of the sampled keys tried first, in order."""

    @property
    def uses_asha(self) -> bool:
        return self.algorithm in ("asha", "optuna+asha")

    @property
    def uses_optuna(self) -> bool:
        return self.algorithm in ("optuna", "optuna+asha")

    def to_dict(self) -> dict[str, Any]:
        """Plain form, leaving out settings that do not apply."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["points_to_evaluate"] = [dict(p) for p in self.points_to_evaluate]
        return {k: v for k, v in values.items() if v is not None and v != []}


@dataclass(frozen=True)
class Resources:
    """Resources each trial reserves."""

    cpus: float = 1.0
    """CPU cores (fractions allowed)."""
    gpus: float = 0.0
    """GPUs: a fraction such as 0.5 shares one GPU between trials."""


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


# -- the space ------------------------------------------------------------------------------


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

    @property
    def is_sampled(self) -> bool:
        """Whether some key is drawn from a distribution."""
        return bool(self.sample)

    @property
    def varying_keys(self) -> list[str]:
        """Keys that change between trials, in file order (``seed`` last)."""
        keys = list(self.points[0]) if self.points else []
        keys += [*self.grid, *self.sample]
        return keys + ([_SEED] if self.repeats else [])

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
        if self.repeats:
            axes.append([{_SEED: seed} for seed in range(self.repeats)])
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
        for prerequisite in reversed(_dependency_order(self.prerequisites)):
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
        order = {p.name: i for i, p in enumerate(_dependency_order(self.prerequisites))}
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
            _drop_unused_settings(settings)
        for key, count in (("num_samples", num_samples), ("max_concurrent", max_concurrent)):
            if count is not None:
                settings[key] = count
        resources = doc.setdefault("resources", {})
        for key, amount in (("cpus", cpus_per_trial), ("gpus", gpus_per_trial)):
            if amount is not None:
                resources[key] = amount
        return parse_space(doc, source=self.source, name=self.name)


def _dependency_order(prerequisites: Mapping[str, Prerequisite]) -> list[Prerequisite]:
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


def _parse_set_values(values: Iterable[str] | Mapping[str, Any]) -> dict[str, Any]:
    nested = dict(values) if isinstance(values, Mapping) else parse_overrides(values)
    flat = flatten_config(nested)
    for key in flat:
        if key not in _KEY_KINDS:
            hint = difflib.get_close_matches(key, list(_KEY_KINDS), n=1)
            suffix = f" (did you mean {hint[0]}?)" if hint else ""
            raise SpaceError(f"--set {key}", "", "unknown key" + suffix)
    # Checked here so that a bad value names the flag rather than the file it is merged into.
    return {key: _normalize_value(f"--set {key}", "", key, value) for key, value in flat.items()}


def _apply_set_values(doc: dict[str, Any], values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        doc.setdefault("fixed", {})[key] = value
        doc.get("grid", {}).pop(key, None)
        doc.get("sample", {}).pop(key, None)
        for point in doc.get("points", []):
            point.pop(key, None)
        for point in doc.get("scheduler", {}).get("points_to_evaluate", []):
            point.pop(key, None)
        if key == _SEED:
            doc.pop("repeats", None)
        prerequisites = doc.get("prerequisites", {})
        for name in [n for n, p in prerequisites.items() if p.get("provides") == key]:
            del prerequisites[name]
    points = [p for p in doc.get("points", []) if p]
    unique = [p for i, p in enumerate(points) if p not in points[:i]]
    doc["points"] = unique
    for section in ("grid", "sample", "points", "prerequisites"):
        if not doc.get(section):
            doc.pop(section, None)


def _drop_unused_settings(settings: dict[str, Any]) -> None:
    algorithm = settings["algorithm"]
    unused = set() if algorithm in ("asha", "optuna+asha") else set(_ASHA_SETTINGS)
    if algorithm not in ("optuna", "optuna+asha"):
        unused |= set(_OPTUNA_SETTINGS)
    if algorithm == "grid":
        unused |= {"num_samples", "seed"}
    for key in unused:
        settings.pop(key, None)


# -- parsing --------------------------------------------------------------------------------


def parse_space(document: Any, source: str = "<string>", name: str | None = None) -> SearchSpace:
    """Validate a loaded YAML document; ``source`` names the file in error messages."""
    if not isinstance(document, Mapping):
        raise SpaceError(source, "", "expected a mapping at the top of the file")
    for key in document:
        if key not in _TOP_KEYS:
            hint = difflib.get_close_matches(str(key), _TOP_KEYS, n=1)
            raise SpaceError(
                source, str(key), "unknown key" + (f" (did you mean {hint[0]}?)" if hint else "")
            )
    sections = _parse_sections(source, document)
    _check_overlaps(source, sections)
    prerequisites = _parse_prerequisites(source, document.get("prerequisites"), sections)
    settings = _parse_scheduler(source, document.get("scheduler"), sections)
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
        scheduler=settings,
        resources=_parse_resources(source, document.get("resources")),
        prerequisites=prerequisites,
        document=_canonical_document(document, sections, prerequisites, settings),
    )
    max_epochs, warned = _validate_trials(space)
    return replace(
        space, scheduler=_fill_asha_defaults(source, settings, max_epochs), warnings=warned
    )


def _optional_text(source: str, key: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise SpaceError(source, key, f"expected text, got {value!r}")
    return value


def _parse_sections(source: str, document: Mapping[str, Any]) -> dict[str, Any]:
    fixed = _typed_mapping(source, "fixed", document.get("fixed") or {})
    grid: dict[str, list[Any]] = {}
    for key, values in _flat_mapping(source, "grid", document.get("grid") or {}).items():
        if not isinstance(values, list) or not values:
            raise SpaceError(source, f"grid.{key}", "expected a non-empty list of values")
        grid[key] = [
            _normalize_value(source, f"grid.{key}[{i}]", key, v) for i, v in enumerate(values)
        ]
        _check_unique(source, f"grid.{key}", grid[key])
    sample = {
        key: _parse_distribution(source, f"sample.{key}", key, spec)
        for key, spec in _flat_mapping(source, "sample", document.get("sample") or {}).items()
    }
    repeats = document.get("repeats")
    if repeats is not None and (not isinstance(repeats, int) or isinstance(repeats, bool)):
        raise SpaceError(source, "repeats", f"expected an integer >= 1, got {repeats!r}")
    if repeats is not None and repeats < 1:
        raise SpaceError(source, "repeats", f"expected an integer >= 1, got {repeats!r}")
    points = _parse_points(source, document.get("points"))
    return {"fixed": fixed, "grid": grid, "points": points, "sample": sample, "repeats": repeats}


def _parse_points(source: str, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not value:
        raise SpaceError(source, "points", "expected a non-empty list of mappings")
    points = [_typed_mapping(source, f"points[{i}]", p) for i, p in enumerate(value)]
    for i, point in enumerate(points):
        if not point:
            raise SpaceError(source, f"points[{i}]", "empty point")
        if set(point) != set(points[0]):
            raise SpaceError(
                source,
                f"points[{i}]",
                f"keys {sorted(point)} differ from points[0] {sorted(points[0])}",
            )
    _check_unique(source, "points", points)
    return points


def _section_keys(sections: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """``(location, key)`` of every key the space sets, in file order."""
    for key in sections["fixed"]:
        yield f"fixed.{key}", key
    for key in sections["points"][0] if sections["points"] else ():
        yield f"points[0].{key}", key
    for section in ("grid", "sample"):
        for key in sections[section]:
            yield f"{section}.{key}", key


def _check_overlaps(source: str, sections: Mapping[str, Any]) -> None:
    seen: dict[str, str] = {}
    for where, key in _section_keys(sections):
        if key in seen:
            raise SpaceError(source, where, f"also set in {seen[key]}; a key is fixed or searched")
        seen[key] = where
    if sections["repeats"] and _SEED in seen:
        raise SpaceError(source, "repeats", f"seeds come from repeats but {seen[_SEED]} sets seed")


def _parse_resources(source: str, value: Any) -> Resources:
    if value is None:
        return Resources()
    if not isinstance(value, Mapping):
        raise SpaceError(source, "resources", f"expected a mapping, got {value!r}")
    for key in value:
        if key not in ("cpus", "gpus"):
            raise SpaceError(source, f"resources.{key}", "unknown key (known: cpus, gpus)")
    cpus, gpus = value.get("cpus", 1.0), value.get("gpus", 0.0)
    if not _is_number(cpus) or cpus <= 0:
        raise SpaceError(source, "resources.cpus", f"expected a number > 0, got {cpus!r}")
    if not _is_number(gpus) or gpus < 0:
        raise SpaceError(source, "resources.gpus", f"expected a number >= 0, got {gpus!r}")
    if gpus > 1 and gpus != int(gpus):
        raise SpaceError(source, "resources.gpus", f"a fraction must be <= 1, got {gpus!r}")
    return Resources(cpus=float(cpus), gpus=float(gpus))


def _parse_prerequisites(
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
    searched = {key: where for where, key in _section_keys(sections)}
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
    if not isinstance(provides, str) or provides not in _KEY_KINDS:
        raise SpaceError(source, f"{where}.provides", f"{provides!r} is not a TrainConfig key")
    if provides not in _PATH_KEYS:
        raise SpaceError(
            source, f"{where}.provides", f"{provides} is not a path key ({', '.join(_PATH_KEYS)})"
        )
    lists = {}
    for key in ("requires", "match"):
        items = spec.get(key) or []
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise SpaceError(source, f"{where}.{key}", f"expected a list of names, got {items!r}")
        lists[key] = tuple(items)
    for key in lists["match"]:
        _check_key(source, f"{where}.match", key)
    config = _typed_mapping(source, f"{where}.config", spec["config"])
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


def _parse_scheduler(source: str, value: Any, sections: Mapping[str, Any]) -> SchedulerSettings:
    if not isinstance(value or {}, Mapping):
        raise SpaceError(source, "scheduler", f"expected a mapping, got {value!r}")
    raw = dict(value or {})
    algorithm = raw.get("algorithm", "grid")
    if algorithm not in ALGORITHMS:
        raise SpaceError(
            source,
            "scheduler.algorithm",
            f"unknown scheduler {algorithm!r} (known: {', '.join(ALGORITHMS)})",
        )
    allowed = set(_COMMON_SETTINGS) | set(_ASHA_SETTINGS) | set(_OPTUNA_SETTINGS)
    for key in raw:
        if key not in allowed:
            raise SpaceError(source, f"scheduler.{key}", "unknown key")
    _check_setting_applies(source, algorithm, raw)
    _check_algorithm_fits(source, algorithm, raw, sections)
    settings = SchedulerSettings(
        algorithm=algorithm,
        metric=_setting(source, raw, "metric", str, "val_acc"),
        mode=_setting(source, raw, "mode", str, "max"),
        num_samples=_setting(source, raw, "num_samples", int, 1, minimum=1),
        max_concurrent=_setting(source, raw, "max_concurrent", int, None, minimum=1),
        seed=_setting(source, raw, "seed", int, None if algorithm == "grid" else 0, minimum=0),
        grace_period=_setting(source, raw, "grace_period", int, None, minimum=1),
        reduction_factor=_setting(source, raw, "reduction_factor", float, None, minimum=1),
        max_t=_setting(source, raw, "max_t", int, None, minimum=1),
        points_to_evaluate=_parse_points_to_evaluate(source, raw, sections["sample"]),
    )
    if settings.mode not in ("max", "min"):
        raise SpaceError(source, "scheduler.mode", f"expected max or min, got {settings.mode!r}")
    _check_metric(source, settings.metric, settings.mode)
    if settings.reduction_factor is not None and settings.reduction_factor <= 1:
        raise SpaceError(source, "scheduler.reduction_factor", "must be greater than 1")
    return settings


def _check_metric(source: str, metric: str, mode: str) -> None:
    """The metric must be one every trial reports, optimised in its only sensible direction.

    An unknown name would only fail once Ray Tune received the first result of every trial.
    """
    if metric not in METRICS:
        hint = difflib.get_close_matches(metric, METRICS, n=1)
        suffix = f"did you mean {hint[0]}?" if hint else f"known: {', '.join(METRICS)}"
        raise SpaceError(source, "scheduler.metric", f"{metric!r} is not reported ({suffix})")
    wanted = "min" if metric.endswith("_loss") else "max"
    if mode != wanted:
        raise SpaceError(
            source, "scheduler.mode", f"{mode} contradicts metric {metric}; use mode: {wanted}"
        )


def _check_setting_applies(source: str, algorithm: str, raw: Mapping[str, Any]) -> None:
    for key in raw:
        if key in _ASHA_SETTINGS and algorithm not in ("asha", "optuna+asha"):
            raise SpaceError(source, f"scheduler.{key}", f"only used by asha, not {algorithm}")
        if key in _OPTUNA_SETTINGS and algorithm not in ("optuna", "optuna+asha"):
            raise SpaceError(source, f"scheduler.{key}", f"only used by optuna, not {algorithm}")
        if key in ("num_samples", "seed") and algorithm == "grid":
            raise SpaceError(
                source, f"scheduler.{key}", "a grid runs each trial once; use repeats for seeds"
            )


def _check_algorithm_fits(
    source: str, algorithm: str, raw: Mapping[str, Any], sections: Mapping[str, Any]
) -> None:
    sample = sections["sample"]
    if algorithm == "grid" and sample:
        raise SpaceError(
            source,
            f"sample.{next(iter(sample))}",
            "the grid algorithm cannot sample; use random, asha, optuna or optuna+asha",
        )
    if algorithm in ("optuna", "optuna+asha"):
        if not sample:
            raise SpaceError(source, "scheduler.algorithm", f"{algorithm} needs sampled keys")
        for where, _ in _section_keys(sections):
            if not where.startswith(("fixed.", "sample.")):
                raise SpaceError(
                    source, where, f"{algorithm} samples every searched key; use choice"
                )
        if sections["repeats"]:
            raise SpaceError(source, "repeats", f"{algorithm} cannot repeat seeds")
    if sample and "num_samples" not in raw:
        raise SpaceError(source, "scheduler.num_samples", "required when keys are sampled")


def _setting(
    source: str,
    raw: Mapping[str, Any],
    key: str,
    kind: type,
    default: Any,
    minimum: float | None = None,
) -> Any:
    if key not in raw:
        return default
    value = raw[key]
    if kind is float and _as_float(value) is not None:
        value = _as_float(value)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok and minimum is not None:
        ok = value >= minimum
    if not ok:
        bound = f" >= {minimum}" if minimum is not None else ""
        raise SpaceError(
            source, f"scheduler.{key}", f"expected {kind.__name__}{bound}, got {value!r}"
        )
    return value


def _parse_points_to_evaluate(
    source: str, raw: Mapping[str, Any], sample: Mapping[str, Distribution]
) -> tuple[dict[str, Any], ...]:
    value = raw.get("points_to_evaluate")
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise SpaceError(source, "scheduler.points_to_evaluate", "expected a non-empty list")
    points = []
    for i, item in enumerate(value):
        where = f"scheduler.points_to_evaluate[{i}]"
        point = _typed_mapping(source, where, item)
        for key, val in point.items():
            if key not in sample:
                raise SpaceError(source, f"{where}.{key}", "not a sampled key")
            if not sample[key].contains(val):
                raise SpaceError(
                    source, f"{where}.{key}", f"{val!r} is outside {sample[key].to_dict()}"
                )
        missing = [k for k in sample if k not in point]
        if missing:
            raise SpaceError(source, where, f"missing sampled keys {', '.join(missing)}")
        points.append(point)
    return tuple(points)


def _fill_asha_defaults(source: str, settings: SchedulerSettings, epochs: int) -> SchedulerSettings:
    """ASHA defaults: ``max_t`` the longest trial, ``grace_period`` a tenth of it, eta 3."""
    if not settings.uses_asha:
        return settings
    max_t = settings.max_t or epochs
    grace = settings.grace_period or max(1, max_t // 10)
    if grace > max_t:
        raise SpaceError(source, "scheduler.grace_period", f"{grace} is larger than max_t {max_t}")
    return replace(
        settings, max_t=max_t, grace_period=grace, reduction_factor=settings.reduction_factor or 3.0
    )


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
    for key in ("scheduler", "resources"):
        if document.get(key):
            doc[key] = dict(document[key])
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


# -- validation of whole trials -------------------------------------------------------------


def _placeholder(name: str) -> str:
    return f"<checkpoint of prerequisite {name}>"


def _check_config(source: str, values: Mapping[str, Any], context: str) -> TrainConfig:
    try:
        return TrainConfig.from_dict(nest_config(values))
    except ValueError as exc:
        raise SpaceError(source, "", f"{exc} ({context})") from None


def _trial_variants(space: SearchSpace, cell: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The cell with representative values of every sampled key (each candidate at least once)."""
    base = {**cell, **{k: d.candidates()[0] for k, d in space.sample.items()}}
    yield base
    for key, distribution in space.sample.items():
        for candidate in distribution.candidates()[1:]:
            yield {**base, key: candidate}
    for point in space.scheduler.points_to_evaluate:
        yield {**cell, **point}


def _validate_trials(space: SearchSpace) -> tuple[int, tuple[str, ...]]:
    """Check every trial with ``TrainConfig.from_dict``; returns the most epochs a trial trains
    and the configuration warnings, each naming the file, the key and how many trials it hits."""
    _check_match_keys(space)
    provided = {p.provides: _placeholder(p.name) for p in space.trial_level_prerequisites()}
    varying = space.varying_keys
    max_epochs = 1
    warned: dict[str, int] = {}
    for cell in space.expand():
        for trial in _trial_variants(space, cell):
            shown = {k: trial[k] for k in varying if k in trial}
            context = f"trial {_describe(shown)}" if shown else "every trial"
            config = _check_config(space.source, {**trial, **provided}, context)
            max_epochs = max(
                max_epochs, sum(config.stage_settings(s).epochs or 0 for s in config.stages)
            )
            for message in config_warnings(config):
                warned[message] = warned.get(message, 0) + 1
    for run in space.prerequisite_runs():
        needs = {space.prerequisites[name].provides: _placeholder(name) for name, _ in run.requires}
        _check_config(space.source, {**run.config, **needs}, f"prerequisite {run.name}")
    counted = not space.is_sampled and not space.scheduler.points_to_evaluate
    lines = tuple(
        f"{space.source}: {m}" + (f" ({n} trial(s))" if counted else "") for m, n in warned.items()
    )
    return max_epochs, lines


def _check_match_keys(space: SearchSpace) -> None:
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


# -- files ----------------------------------------------------------------------------------


def space_dirs() -> list[Path]:
    """Folders searched for named spaces: ``$EGOTUNE_SPACES`` entries first, then the bundled."""
    extra = [Path(p) for p in os.environ.get(SPACES_ENV, "").split(os.pathsep) if p]
    return [*extra, BUNDLED_SPACES_DIR]


def list_spaces() -> dict[str, Path]:
    """Name -> file of every space found in :func:`space_dirs` (earlier folders win)."""
    found: dict[str, Path] = {}
    for folder in space_dirs():
        if folder.is_dir():
            for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
                found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def find_space(name_or_path: str | os.PathLike[str]) -> Path:
    """A space file from a bundled name (``fig10_ms_classification_grid``) or a path."""
    text = os.fspath(name_or_path)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or os.sep in text or "/" in text:
        if not path.is_file():
            raise SpaceError(text, "", "no such file")
        return path
    spaces = list_spaces()
    if text not in spaces:
        hint = difflib.get_close_matches(text, list(spaces), n=1)
        suffix = f"; did you mean {hint[0]}?" if hint else f" (known: {', '.join(spaces)})"
        raise SpaceError(text, "", f"unknown search space{suffix}")
    return spaces[text]


def _display_path(path: Path) -> str:
    """The path as messages show it: relative to the working folder or the repository."""
    resolved = path.resolve()
    for base in (Path.cwd(), BUNDLED_SPACES_DIR.parent):
        try:
            return str(resolved.relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


def load_space(name_or_path: str | os.PathLike[str]) -> SearchSpace:
    """Read, validate and return a search space (bundled name or YAML path)."""
    path = find_space(name_or_path)
    source = _display_path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpaceError(source, "", f"not valid YAML: {yaml_error_text(exc)}") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        message = f"not UTF-8 text (line {line}); save it as UTF-8"
        raise SpaceError(source, "", message) from None
    return parse_space(document, source=source, name=path.stem)
