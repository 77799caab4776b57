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
from collections.abc import Mapping, Sequence
from typing import Any

from tuner.errors import EgotuneError
from tuner.spaces import (
    Distribution,
    SearchSpace,
    key_kind,
)
from tuner.training.fidelity import FIDELITY_KEY
from tuner.training.recipes import import_recipe_modules, recipe_modules

__all__ = [
    "CONFIG_FLOPS",
    "FOLD_KEY",
    "POINT_KEY",
    "POPULATION_KEY",
    "RECIPES_KEY",
    "build_param_space",
    "encode_choice",
    "fidelity_entry",
    "population_config",
    "resolve_trial_config",
    "trial_configs",
    "trial_dirname",
    "trial_resources",
    "with_recipe_modules",
]

CONFIG_FLOPS = "config_flops"
"""Reported with every epoch by the trainable: counted FLOPs of the trial's whole run as
configured (Optuna's second objective under ``scheduler.cost: flops``)."""
POPULATION_KEY = "_population"
"""Config entry of a population trial: ``{"interval", "keys", "generation"}``."""
RECIPES_KEY = "_recipes"
"""Config entry naming the modules outside egotune that registered model recipes (a
researcher's own family): the trial imports them before it reads its configuration."""
POINT_KEY = "_point"
FOLD_KEY = "_fold"

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


def encode_choice(value: Any, for_optuna: bool) -> Any:
    return json.dumps(value) if for_optuna and isinstance(value, list) else value


def _domain(distribution: Distribution, for_optuna: bool) -> Any:
    from ray import tune

    if distribution.kind == "choice":
        return tune.choice([encode_choice(v, for_optuna) for v in distribution.choices])
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
        param_space[POPULATION_KEY] = population_config(space)
    param_space.update(fidelity_entry(space))
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


def fidelity_entry(space: SearchSpace) -> dict[str, Any]:
    """The schedule entry of every trial's Tune config when the space's rungs change the clip
    length or crop (:data:`FIDELITY_KEY`), else nothing."""
    rungs = space.scheduler.rungs
    if rungs is None or all(r.frames is None and r.crop_size is None for r in rungs.rungs):
        return {}
    return {FIDELITY_KEY: rungs.to_config()}


def trial_configs(
    space: SearchSpace, checkpoints: Mapping[str, Mapping[MatchValues, str]]
) -> list[dict[str, Any]]:
    """Every trial's configuration of a search without sampled keys, in search order (that of
    :meth:`SearchSpace.expand`, once per sample): the trials a prefix-sharing search hands out."""
    configs = []
    for cell in space.expand() * space.scheduler.num_samples:
        config = {**cell, **fidelity_entry(space)}
        for prerequisite in space.trial_level_prerequisites():
            paths = checkpoints.get(prerequisite.name)
            if paths is None:
                raise EgotuneError(f"prerequisite {prerequisite.name}: no checkpoint given")
            match = tuple((k, _hashable(cell[k])) for k in prerequisite.match)
            config[prerequisite.provides] = paths[match]
        configs.append(config)
    return configs


def resolve_trial_config(tune_config: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's configuration values (flat, nested keys dotted) from the config Tune gives
    it: :meth:`TrainConfig.from_trial <tuner.training.config.TrainConfig.from_trial>` takes them.

    Drops Tune-side entries (``_point``, ``_fold``, ``_population``) and decodes list values
    that Optuna carried as JSON text. Imports the recipe modules the trial names first
    (:data:`RECIPES_KEY`), so a model family registered outside egotune is known in the worker.
    """
    import_recipe_modules(tune_config.get(RECIPES_KEY, ()))
    flat: dict[str, Any] = {}
    for key, value in tune_config.items():
        if key.startswith("_"):
            continue
        if isinstance(value, str) and _is_list_key(key) and value.startswith("["):
            value = json.loads(value)
        flat[key] = value
    return flat


def with_recipe_modules(param_space: Mapping[str, Any]) -> dict[str, Any]:
    """``param_space`` with :data:`RECIPES_KEY` when recipes were registered outside egotune."""
    modules = recipe_modules()
    return {**param_space, RECIPES_KEY: list(modules)} if modules else dict(param_space)


def _is_list_key(key: str) -> bool:
    try:
        return key_kind(key).endswith("_list")
    except KeyError:
        return False


def population_config(space: SearchSpace) -> dict[str, Any]:
    """The ``_population`` entry every trial of a population search starts with."""
    settings = space.scheduler
    assert settings.mutations is not None and settings.perturbation_interval is not None
    return {
        "interval": settings.perturbation_interval,
        "keys": sorted(settings.mutations),
        "generation": 0,
    }


def trial_resources(space: SearchSpace) -> dict[str, float]:
    """Resources for ``tune.with_resources``: ``{"cpu": ..., "gpu": ...}``."""
    return {"cpu": space.resources.cpus, "gpu": space.resources.gpus}


def trial_dirname(trial: Any) -> str:
    """Tune's folder of a trial: ``<trainable>_<trial id>``. Tune's default appends every
    value a searcher suggests (all keys, for Optuna and the prefix-sharing searcher), cut at
    an arbitrary length; the values are in the trials table."""
    return f"{trial.trainable_name}_{trial.trial_id}"
