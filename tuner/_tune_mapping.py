"""The one place where a validated :class:`~tuner.spaces.SearchSpace` becomes Ray Tune objects.

Trial configurations are flat: one entry per TrainConfig key, nested keys dotted (``alpha.ms``),
so Ray's ``config/<key>`` result columns match the Parquet columns. Grid axes and the seed axis
become one ``tune.grid_search`` each; rows of ``points`` become a ``_point`` index axis whose keys
are looked up with ``tune.sample_from``, so a non-factorial grid still yields exactly
``space.expand()``. Optuna cannot hold list-valued categories, so for Optuna searches such choices
(``milestones``) travel as JSON text; :func:`resolve_trial_config` undoes both encodings.

ray and optuna are imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tuner.errors import EgotuneError
from tuner.spaces import (
    ASHA_REDUCTION_FACTOR,
    Distribution,
    SearchSpace,
    key_kind,
    nest_config,
)

__all__ = [
    "FOLD_KEY",
    "OPTUNA_DB",
    "POINT_KEY",
    "build_param_space",
    "build_progress_reporter",
    "build_scheduler",
    "build_search_alg",
    "build_tune_config",
    "optuna_storage_url",
    "resolve_trial_config",
    "trial_configs",
    "trial_dirname",
    "trial_resources",
]

POINT_KEY = "_point"
FOLD_KEY = "_fold"
OPTUNA_DB = "optuna.db"

MatchValues = tuple[tuple[str, Any], ...]


class _ConfigValue:
    """``tune.sample_from`` function: a key of the trial's point row, or of its fold with
    ``index_key=FOLD_KEY`` (picklable, unlike lambdas)."""

    def __init__(
        self, points: Sequence[Mapping[str, Any]], key: str, index_key: str = POINT_KEY
    ) -> None:
        self.points = [dict(p) for p in points]
        self.key = key
        self.index_key = index_key

    def __call__(self, config: Mapping[str, Any]) -> Any:
        return self.points[config[self.index_key]][self.key]


class _ProvidedPath:
    """``tune.sample_from`` function: the checkpoint of the prerequisite run a trial matches."""

    def __init__(
        self,
        points: Sequence[Mapping[str, Any]],
        match: Sequence[str],
        paths: Mapping[Any, str],
        folds: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.points = [dict(p) for p in points]
        self.match = list(match)
        self.paths = dict(paths)
        self.folds = [dict(f) for f in folds]

    def __call__(self, config: Mapping[str, Any]) -> str:
        row = dict(self.points[config[POINT_KEY]]) if self.points else {}
        if self.folds:
            row.update(self.folds[config[FOLD_KEY]])
        values = tuple((k, _hashable(row[k] if k in row else config[k])) for k in self.match)
        return self.paths[values]


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _encode_choice(value: Any, for_optuna: bool) -> Any:
    return json.dumps(value) if for_optuna and isinstance(value, list) else value


def _domain(distribution: Distribution, for_optuna: bool) -> Any:
    from ray import tune

    if distribution.kind == "choice":
        return tune.choice([_encode_choice(v, for_optuna) for v in distribution.choices])
    assert distribution.low is not None and distribution.high is not None
    low, high = distribution.low, distribution.high
    if distribution.kind == "uniform":
        return tune.uniform(float(low), float(high))
    if distribution.kind == "loguniform":
        return tune.loguniform(float(low), float(high))
    return tune.randint(int(low), int(high) + 1)  # the file's bound is inclusive, Ray's is not


def build_param_space(
    space: SearchSpace, checkpoints: Mapping[str, Mapping[MatchValues, str]] | None = None
) -> dict[str, Any]:
    """The ``param_space`` of ``tune.Tuner`` for ``space``.

    ``checkpoints`` maps each trial-level prerequisite name to the checkpoint path of each of its
    runs (keyed by ``PrerequisiteRun.match``); the path goes into the key the prerequisite
    provides. Without it the provided keys are left out.
    """
    from ray import tune

    for_optuna = space.scheduler.uses_optuna
    param_space: dict[str, Any] = dict(space.fixed)
    if space.points:
        param_space[POINT_KEY] = tune.grid_search(list(range(len(space.points))))
        for key in space.points[0]:
            param_space[key] = tune.sample_from(_ConfigValue(space.points, key))
    for key, values in space.grid.items():
        param_space[key] = tune.grid_search(list(values))
    if space.folds:
        param_space[FOLD_KEY] = tune.grid_search(list(range(len(space.folds))))
        for key in space.folds[0]:
            param_space[key] = tune.sample_from(_ConfigValue(space.folds, key, FOLD_KEY))
    if space.repeats:
        param_space["seed"] = tune.grid_search(list(range(space.repeats)))
    for key, distribution in space.sample.items():
        param_space[key] = _domain(distribution, for_optuna)
    if space.scheduler.population:
        from tuner.population import POPULATION_KEY, population_config

        param_space[POPULATION_KEY] = population_config(space)
    for prerequisite in space.trial_level_prerequisites() if checkpoints is not None else ():
        assert checkpoints is not None
        paths = checkpoints.get(prerequisite.name)
        if paths is None:
            raise EgotuneError(f"prerequisite {prerequisite.name}: no checkpoint given")
        if not prerequisite.match:
            param_space[prerequisite.provides] = paths[()]
        else:
            lookup = _ProvidedPath(space.points, prerequisite.match, paths, space.folds)
            param_space[prerequisite.provides] = tune.sample_from(lookup)
    return param_space


def trial_configs(
    space: SearchSpace, checkpoints: Mapping[str, Mapping[MatchValues, str]]
) -> list[dict[str, Any]]:
    """Every trial's configuration of a search without sampled keys, in search order (that of
    :meth:`SearchSpace.expand`, once per sample): the trials a prefix-sharing search hands out."""
    configs = []
    for cell in space.expand() * space.scheduler.num_samples:
        config = dict(cell)
        for prerequisite in space.trial_level_prerequisites():
            paths = checkpoints.get(prerequisite.name)
            if paths is None:
                raise EgotuneError(f"prerequisite {prerequisite.name}: no checkpoint given")
            match = tuple((k, _hashable(cell[k])) for k in prerequisite.match)
            config[prerequisite.provides] = paths[match]
        configs.append(config)
    return configs


def resolve_trial_config(tune_config: Mapping[str, Any]) -> dict[str, Any]:
    """The nested mapping ``TrainConfig.from_dict`` takes, from the config a trial receives.

    Drops the ``_point`` index and decodes list values that Optuna carried as JSON text.
    """
    flat: dict[str, Any] = {}
    for key, value in tune_config.items():
        if key.startswith("_"):
            continue
        if isinstance(value, str) and _is_list_key(key) and value.startswith("["):
            value = json.loads(value)
        flat[key] = value
    return nest_config(flat)


def _is_list_key(key: str) -> bool:
    try:
        return key_kind(key).endswith("_list")
    except KeyError:
        return False


def trial_resources(space: SearchSpace) -> dict[str, float]:
    """Resources for ``tune.with_resources``: ``{"cpu": ..., "gpu": ...}``."""
    return {"cpu": space.resources.cpus, "gpu": space.resources.gpus}


def build_scheduler(space: SearchSpace, experiment_dir: str | Path | None = None) -> Any:
    """ASHA on the reported ``epoch`` for asha algorithms, PBT/PB2 (recording their exploits
    in ``experiment_dir``) for population ones; ``None`` (FIFO) otherwise."""
    settings = space.scheduler
    if settings.population:
        from tuner._population_schedulers import build_population_scheduler

        if experiment_dir is None:
            raise ValueError("a population search records its exploits in its experiment folder")
        return build_population_scheduler(space, experiment_dir)
    if not settings.uses_asha:
        return None
    from ray.tune.schedulers import ASHAScheduler

    assert settings.max_t is not None and settings.grace_period is not None
    if settings.grace_period > settings.max_t:
        raise EgotuneError(
            f"{space.source}: scheduler.grace_period: {settings.grace_period} > max_t "
            f"{settings.max_t}"
        )
    return ASHAScheduler(
        time_attr="epoch",
        metric=settings.metric,
        mode=settings.mode,
        max_t=settings.max_t,
        grace_period=settings.grace_period,
        reduction_factor=settings.reduction_factor or ASHA_REDUCTION_FACTOR,
    )


def optuna_storage_url(experiment_dir: str | Path) -> str:
    """SQLite URL of the study in the experiment folder (``optuna-dashboard`` opens it live).

    The study is named after the experiment (the folder's name), so studies of two runs of the
    same space stay apart when copied into one database.
    """
    return f"sqlite:///{Path(experiment_dir).resolve() / OPTUNA_DB}"


def build_search_alg(space: SearchSpace, experiment_dir: str | Path) -> Any:
    """The search algorithm: BasicVariantGenerator for grid/random/asha, OptunaSearch (TPE) else.

    Concurrency is applied here (``max_concurrent``), so leave ``max_concurrent_trials`` unset.
    """
    settings = space.scheduler
    if not settings.uses_optuna:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(
            max_concurrent=settings.max_concurrent or 0, random_state=settings.seed
        )
    optuna = _import_optuna()
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    Path(experiment_dir).mkdir(parents=True, exist_ok=True)
    searcher = OptunaSearch(
        metric=settings.metric,
        mode=settings.mode,
        points_to_evaluate=[
            {k: _encode_choice(v, True) for k, v in point.items()}
            for point in settings.points_to_evaluate
        ]
        or None,
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
        study_name=Path(experiment_dir).name,
        storage=optuna.storages.RDBStorage(optuna_storage_url(experiment_dir)),
    )
    if settings.max_concurrent:
        return ConcurrencyLimiter(searcher, max_concurrent=settings.max_concurrent)
    return searcher


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise EgotuneError(
            "the optuna and optuna+asha algorithms need the optuna package "
            "(pip install 'optuna>=4'); or run this space with --scheduler random or asha"
        ) from None
    return optuna


def build_tune_config(space: SearchSpace, experiment_dir: str | Path) -> Any:
    """``tune.TuneConfig`` with the space's searcher, scheduler and number of samples.

    ``metric``/``mode`` are given to ASHA and Optuna themselves (Ray refuses them twice) and to
    the TuneConfig only for plain grid and random searches.
    """
    from ray import tune

    settings = space.scheduler
    carried = settings.uses_asha or settings.uses_optuna or settings.population
    return tune.TuneConfig(
        metric=None if carried else settings.metric,
        mode=None if carried else settings.mode,
        search_alg=build_search_alg(space, experiment_dir),
        scheduler=build_scheduler(space, experiment_dir),
        num_samples=settings.num_samples,
        trial_dirname_creator=trial_dirname,
    )


def trial_dirname(trial: Any) -> str:
    """Tune's folder of a trial: ``<trainable>_<trial id>``. Tune's default appends every
    value a searcher suggests (all keys, for Optuna and the prefix-sharing searcher), cut at
    an arbitrary length; the values are in the trials table."""
    return f"{trial.trainable_name}_{trial.trial_id}"


REPORT_EVERY_S = 20
"""Seconds between two tables of the live console (and one when the search ends)."""


def select_classic_console() -> None:
    """Tune's classic console, the one that prints a ``CLIReporter``'s table: Tune's newer console
    (``RAY_AIR_NEW_OUTPUT`` unset) ignores the reporter, with a warning, and infers its own
    columns. A restored Tuner brings back the reporter it was built with but not this setting, so
    a resumed search selects it too. An environment that chose a console keeps it."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def build_progress_reporter(space: SearchSpace | None, *, every_s: float = REPORT_EVERY_S) -> Any:
    """Tune's ``CLIReporter`` for the live console of a search of ``space`` (``None``: a single
    run, such as a prerequisite, optimising ``val_acc``).

    One table every ``every_s`` seconds: the varying hyperparameters, the epoch, the optimised
    metric, the best validation accuracy so far and the training loss, best trials first, under
    Tune's line naming the current best trial (and, with ASHA, the rung cut-offs). The reporter
    belongs to Tune's classic console, which this selects (``RAY_AIR_NEW_OUTPUT=0``, Tune's own
    switch) unless the environment chose one already; Tune's newer console infers its columns
    and ignores a reporter.
    """
    from ray import tune

    select_classic_console()
    metric, mode = (space.scheduler.metric, space.scheduler.mode) if space else ("val_acc", "max")
    columns = {"epoch": "epoch", metric: metric, "best_val_acc": "best_val_acc"}
    columns.setdefault("train_loss", "train_loss")
    # Rank by the best accuracy so far rather than the last epoch's. Grid and random searches
    # give Tune the metric themselves (build_tune_config), which ranks by it: Tune refuses it
    # twice, so the reporter then takes Tune's.
    carried = space is None or space.scheduler.uses_asha or space.scheduler.uses_optuna
    ranked = "best_val_acc" if metric == "val_acc" else metric
    return tune.CLIReporter(
        metric_columns=columns,
        parameter_columns=space.varying_keys if space else ["model", "stage"],
        max_report_frequency=int(every_s),
        max_column_length=14,
        metric=ranked if carried else None,
        mode=mode if carried else None,
        sort_by_metric=True,
    )
