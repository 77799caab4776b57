"""The ``scheduler`` block: searcher and scheduler algorithm, metric and their settings."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from tuner.hints import did_you_mean
from tuner.spaces._distributions import Distribution, parse_distribution
from tuner.spaces._keys import SpaceError, as_float, section_keys, typed_mapping
from tuner.training.config import TrainConfig
from tuner.training.fidelity import FidelitySchedule, Rung

__all__ = [
    "ALGORITHMS",
    "ASHA_REDUCTION_FACTOR",
    "METRICS",
    "Algorithm",
    "SchedulerSettings",
    "asha_grace_period",
    "drop_unused_settings",
    "fill_asha_defaults",
    "parse_scheduler",
]


class Algorithm(enum.StrEnum):
    """Searcher / scheduler of a space, as its ``scheduler.algorithm`` names it."""

    GRID = "grid"
    RANDOM = "random"
    ASHA = "asha"
    OPTUNA = "optuna"
    OPTUNA_ASHA = "optuna+asha"
    PBT = "pbt"
    PB2 = "pb2"

    @property
    def uses_asha(self) -> bool:
        """ASHA stops trials at rungs (``asha``, ``optuna+asha``)."""
        return self in (Algorithm.ASHA, Algorithm.OPTUNA_ASHA)

    @property
    def uses_optuna(self) -> bool:
        """Optuna's TPE sampler proposes the trials (``optuna``, ``optuna+asha``)."""
        return self in (Algorithm.OPTUNA, Algorithm.OPTUNA_ASHA)

    @property
    def samples(self) -> bool:
        """Whether trials are drawn (every algorithm but ``grid``)."""
        return self is not Algorithm.GRID

    @property
    def population(self) -> bool:
        """Population-based training: trials continue from better trials' checkpoints with
        perturbed hyperparameters (``pbt``, ``pb2``)."""
        return self in (Algorithm.PBT, Algorithm.PB2)

    @property
    def shares_prefixes(self) -> bool:
        """Whether the trials are known before the search starts, so that their shared
        prefixes can run once (grid cells and points; :mod:`tuner.spaces._sharing`)."""
        return not self.uses_optuna and not self.population


ALGORITHMS = tuple(a.value for a in Algorithm)
REPLAYABLE = tuple(a.value for a in Algorithm if not a.population)
"""Schedulers ``egotune replay`` can run on recorded curves: a population-based search
continues trials from other trials' states, which recorded curves cannot do."""
METRICS = ("val_acc", "val_loss", "train_acc", "train_loss", "best_val_acc")
"""Metrics a search can optimise: what every trial reports each epoch (``EpochRecord``)."""
ASHA_REDUCTION_FACTOR = 3.0
"""ASHA's default eta: a third of the trials go on at each rung."""

_COMMON_SETTINGS = ("algorithm", "metric", "mode", "num_samples", "max_concurrent", "seed")
_ASHA_SETTINGS = ("grace_period", "reduction_factor", "max_t", "rungs")
_OPTUNA_SETTINGS = ("points_to_evaluate", "cost", "sampler")
SAMPLERS = ("tpe", "nsga2")
"""Optuna samplers: TPE (default; multivariate over two objectives too) and NSGA-II."""
COST_OBJECTIVES = ("flops",)
"""``scheduler.cost``: a second objective Optuna minimises (the trial's counted FLOPs as
configured, reported as ``config_flops``)."""
_POPULATION_SETTINGS = (
    "perturbation_interval",
    "quantile_fraction",
    "resample_probability",
    "mutations",
)
QUANTILE_FRACTION = 0.25
RESAMPLE_PROBABILITY = 0.25


def asha_grace_period(max_t: int) -> int:
    """ASHA's default grace period: a tenth of the longest trial, at least one epoch."""
    return max(1, max_t // 10)


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
    rungs: FidelitySchedule | None = None
    """ASHA with explicit rungs: the epochs it compares trials at and, for a fidelity schedule,
    the clip length and crop each rung trains at (:mod:`tuner.training.fidelity`)."""
    points_to_evaluate: tuple[dict[str, Any], ...] = ()
    """Optuna: configurations of the sampled keys tried first, in order."""
    cost: str | None = None
    """Optuna: a second objective to minimise, ``flops`` (multi-objective search)."""
    sampler: str | None = None
    """Optuna: ``tpe`` (default) or ``nsga2``."""
    perturbation_interval: int | None = None
    """PBT/PB2: epochs between two exploit/explore decisions of a trial."""
    quantile_fraction: float | None = None
    """PBT/PB2: share of the population that continues from the top share's checkpoints."""
    resample_probability: float | None = None
    """PBT: probability that a mutated value is drawn anew rather than scaled by 0.8 or 1.2."""
    mutations: dict[str, Distribution] | None = None
    """PBT/PB2: keys explored at each exploit and their ranges (PB2: uniform or loguniform)."""

    @property
    def uses_asha(self) -> bool:
        return Algorithm(self.algorithm).uses_asha

    @property
    def uses_optuna(self) -> bool:
        return Algorithm(self.algorithm).uses_optuna

    @property
    def shares_prefixes(self) -> bool:
        return Algorithm(self.algorithm).shares_prefixes

    @property
    def population(self) -> bool:
        return Algorithm(self.algorithm).population

    def to_dict(self) -> dict[str, Any]:
        """Plain form, leaving out settings that do not apply."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["points_to_evaluate"] = [dict(p) for p in self.points_to_evaluate]
        if self.mutations is not None:
            values["mutations"] = {k: d.to_dict() for k, d in self.mutations.items()}
        if self.rungs is not None:
            values["rungs"] = [
                {k: v for k, v in dataclasses.asdict(r).items() if v is not None}
                for r in self.rungs.rungs
            ]
        return {k: v for k, v in values.items() if v is not None and v != []}


def parse_scheduler(source: str, value: Any, sections: Mapping[str, Any]) -> SchedulerSettings:
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
    allowed = {*_COMMON_SETTINGS, *_ASHA_SETTINGS, *_OPTUNA_SETTINGS, *_POPULATION_SETTINGS}
    for key in raw:
        if key not in allowed:
            raise SpaceError(source, f"scheduler.{key}", "unknown key")
    _check_setting_applies(source, Algorithm(algorithm), raw)
    _check_algorithm_fits(source, Algorithm(algorithm), raw, sections)
    settings = SchedulerSettings(
        algorithm=algorithm,
        metric=_setting(source, raw, "metric", str, "val_acc"),
        mode=_setting(source, raw, "mode", str, "max"),
        num_samples=_setting(source, raw, "num_samples", int, 1, minimum=1),
        max_concurrent=_setting(source, raw, "max_concurrent", int, None, minimum=1),
        seed=_setting(
            source, raw, "seed", int, 0 if Algorithm(algorithm).samples else None, minimum=0
        ),
        grace_period=_setting(source, raw, "grace_period", int, None, minimum=1),
        reduction_factor=_setting(source, raw, "reduction_factor", float, None, minimum=1),
        max_t=_setting(source, raw, "max_t", int, None, minimum=1),
        points_to_evaluate=_parse_points_to_evaluate(source, raw, sections["sample"]),
        perturbation_interval=_setting(source, raw, "perturbation_interval", int, None, minimum=1),
        quantile_fraction=_setting(source, raw, "quantile_fraction", float, None, minimum=0),
        resample_probability=_setting(source, raw, "resample_probability", float, None, minimum=0),
        mutations=_parse_mutations(source, Algorithm(algorithm), raw, sections),
        rungs=_parse_rungs(source, raw),
        cost=_setting(source, raw, "cost", str, None),
        sampler=_setting(source, raw, "sampler", str, None),
    )
    if settings.cost is not None and settings.cost not in COST_OBJECTIVES:
        raise SpaceError(
            source,
            "scheduler.cost",
            f"expected {', '.join(COST_OBJECTIVES)}, got {settings.cost!r}",
        )
    if settings.sampler is not None and settings.sampler not in SAMPLERS:
        suffix = did_you_mean(settings.sampler, SAMPLERS, listing=True)
        raise SpaceError(source, "scheduler.sampler", f"unknown sampler ({suffix})")
    if settings.quantile_fraction is not None and not 0 < settings.quantile_fraction <= 0.5:
        raise SpaceError(source, "scheduler.quantile_fraction", "must be in (0, 0.5]")
    if settings.resample_probability is not None and settings.resample_probability > 1:
        raise SpaceError(source, "scheduler.resample_probability", "must be in [0, 1]")
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
        suffix = did_you_mean(metric, METRICS, listing=True)
        raise SpaceError(source, "scheduler.metric", f"{metric!r} is not reported ({suffix})")
    wanted = "min" if metric.endswith("_loss") else "max"
    if mode != wanted:
        raise SpaceError(
            source, "scheduler.mode", f"{mode} contradicts metric {metric}; use mode: {wanted}"
        )


def _check_setting_applies(source: str, algorithm: Algorithm, raw: Mapping[str, Any]) -> None:
    for key in raw:
        if key in _ASHA_SETTINGS and not algorithm.uses_asha:
            raise SpaceError(source, f"scheduler.{key}", f"only used by asha, not {algorithm}")
        if key in _OPTUNA_SETTINGS and not algorithm.uses_optuna:
            raise SpaceError(source, f"scheduler.{key}", f"only used by optuna, not {algorithm}")
        if key in _POPULATION_SETTINGS and not algorithm.population:
            raise SpaceError(
                source, f"scheduler.{key}", f"only used by pbt and pb2, not {algorithm}"
            )
        if key == "resample_probability" and algorithm is Algorithm.PB2:
            raise SpaceError(source, f"scheduler.{key}", "only used by pbt (pb2 models the values)")
        if key in ("num_samples", "seed") and not algorithm.samples:
            raise SpaceError(
                source, f"scheduler.{key}", "a grid runs each trial once; use repeats for seeds"
            )


def _check_algorithm_fits(
    source: str, algorithm: Algorithm, raw: Mapping[str, Any], sections: Mapping[str, Any]
) -> None:
    sample = sections["sample"]
    if not algorithm.samples and sample:
        raise SpaceError(
            source,
            f"sample.{next(iter(sample))}",
            "the grid algorithm cannot sample; use random, asha, optuna or optuna+asha",
        )
    if algorithm.uses_optuna:
        if not sample:
            raise SpaceError(source, "scheduler.algorithm", f"{algorithm} needs sampled keys")
        for where, _ in section_keys(sections):
            if not where.startswith(("fixed.", "sample.")):
                raise SpaceError(
                    source, where, f"{algorithm} samples every searched key; use choice"
                )
        if sections["repeats"]:
            raise SpaceError(source, "repeats", f"{algorithm} cannot repeat seeds")
    if sample and "num_samples" not in raw:
        raise SpaceError(source, "scheduler.num_samples", "required when keys are sampled")
    if algorithm.population:
        if "mutations" not in raw:
            raise SpaceError(source, "scheduler.mutations", f"{algorithm} needs keys to mutate")
        if "num_samples" not in raw:
            raise SpaceError(source, "scheduler.num_samples", "required: the population size")


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
    if kind is float and as_float(value) is not None:
        value = as_float(value)
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok and minimum is not None:
        ok = value >= minimum
    if not ok:
        bound = f" >= {minimum}" if minimum is not None else ""
        raise SpaceError(
            source, f"scheduler.{key}", f"expected {kind.__name__}{bound}, got {value!r}"
        )
    return value


def _parse_mutations(
    source: str, algorithm: Algorithm, raw: Mapping[str, Any], sections: Mapping[str, Any]
) -> dict[str, Distribution] | None:
    value = raw.get("mutations")
    if value is None:
        return None
    where = "scheduler.mutations"
    if not isinstance(value, Mapping) or not value:
        raise SpaceError(source, where, "expected a mapping of keys to distributions")
    mutations = {}
    for key, spec in value.items():
        mutable = TrainConfig.mutable_keys()
        if key not in mutable:
            suffix = did_you_mean(str(key), mutable, listing=True)
            raise SpaceError(source, f"{where}.{key}", f"cannot be mutated ({suffix})")
        if key in sections["grid"] or any(key in point for point in sections["points"]):
            raise SpaceError(
                source, f"{where}.{key}", "also a grid or points key; sample or fix it instead"
            )
        distribution = parse_distribution(source, f"{where}.{key}", key, spec)
        if algorithm is Algorithm.PB2 and distribution.kind not in ("uniform", "loguniform"):
            raise SpaceError(
                source, f"{where}.{key}", "pb2 models continuous keys: use uniform or loguniform"
            )
        mutations[str(key)] = distribution
    return mutations


_RUNG_KEYS = ("until", "frames", "crop_size")


def _parse_rungs(source: str, raw: Mapping[str, Any]) -> FidelitySchedule | None:
    """``scheduler.rungs``: a list of ``{until: E, frames: T, crop_size: S}`` with increasing
    epochs; ``frames`` and ``crop_size`` are optional (the trial's own value)."""
    value = raw.get("rungs")
    if value is None:
        return None
    where = "scheduler.rungs"
    if not isinstance(value, list) or not value:
        raise SpaceError(source, where, "expected a non-empty list of {until, frames, crop_size}")
    for key in ("grace_period", "max_t"):
        if key in raw:
            raise SpaceError(
                source, f"scheduler.{key}", "not with rungs: the rungs' until epochs set the rungs"
            )
    rungs: list[Rung] = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise SpaceError(
                source, f"{where}[{i}]", f"expected {{until, frames, crop_size}}, got {item!r}"
            )
        entry = dict(item)
        for key in entry:
            if key not in _RUNG_KEYS:
                suffix = did_you_mean(str(key), _RUNG_KEYS, listing=True)
                raise SpaceError(source, f"{where}[{i}].{key}", f"unknown key ({suffix})")
        if "until" not in entry:
            raise SpaceError(source, f"{where}[{i}]", "missing until (the rung's last epoch)")
        for key in _RUNG_KEYS:
            if key in entry and (
                not isinstance(entry[key], int) or isinstance(entry[key], bool) or entry[key] < 1
            ):
                raise SpaceError(
                    source,
                    f"{where}[{i}].{key}",
                    f"expected a whole number >= 1, got {entry[key]!r}",
                )
        if rungs and entry["until"] <= rungs[-1].until:
            raise SpaceError(
                source,
                f"{where}[{i}].until",
                f"must be after the previous rung's {rungs[-1].until}",
            )
        rungs.append(Rung(entry["until"], entry.get("frames"), entry.get("crop_size")))
    return FidelitySchedule(tuple(rungs))


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
        point = typed_mapping(source, where, item)
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


def fill_asha_defaults(source: str, settings: SchedulerSettings, epochs: int) -> SchedulerSettings:
    """ASHA defaults: ``max_t`` the longest trial, ``grace_period`` a tenth of it, eta 3;
    PBT/PB2: a perturbation every tenth of the longest trial, quantile 0.25, resampling 0.25."""
    if settings.population:
        return replace(
            settings,
            perturbation_interval=settings.perturbation_interval or asha_grace_period(epochs),
            quantile_fraction=settings.quantile_fraction or QUANTILE_FRACTION,
            resample_probability=(
                None
                if settings.algorithm == Algorithm.PB2
                else RESAMPLE_PROBABILITY
                if settings.resample_probability is None
                else settings.resample_probability
            ),
        )
    if not settings.uses_asha:
        return settings
    if settings.rungs is not None:
        last = settings.rungs.milestones[-1]
        if last >= epochs:
            raise SpaceError(
                source,
                "scheduler.rungs",
                f"the last rung ends at epoch {last}, not before the trials' last epoch {epochs}",
            )
        return replace(
            settings,
            max_t=epochs,
            grace_period=settings.rungs.milestones[0],
            reduction_factor=settings.reduction_factor or ASHA_REDUCTION_FACTOR,
        )
    max_t = settings.max_t or epochs
    grace = settings.grace_period or asha_grace_period(max_t)
    if grace > max_t:
        raise SpaceError(source, "scheduler.grace_period", f"{grace} is larger than max_t {max_t}")
    return replace(
        settings,
        max_t=max_t,
        grace_period=grace,
        reduction_factor=settings.reduction_factor or ASHA_REDUCTION_FACTOR,
    )


def drop_unused_settings(settings: dict[str, Any]) -> None:
    """Remove the settings of a ``scheduler`` mapping that its algorithm does not use."""
    algorithm = Algorithm(settings["algorithm"])
    unused = set() if algorithm.uses_asha else set(_ASHA_SETTINGS)
    if not algorithm.uses_optuna:
        unused |= set(_OPTUNA_SETTINGS)
    if not algorithm.population:
        unused |= set(_POPULATION_SETTINGS)
    if not algorithm.samples:
        unused |= {"num_samples", "seed"}
    for key in unused:
        settings.pop(key, None)
