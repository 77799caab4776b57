"""The search algorithms of a space's ``scheduler`` block, one module each, and the table that
picks them by name.

An algorithm (``tuner.spaces.Algorithm``) is a searcher, which proposes trials, and a scheduler,
which stops or changes them: :data:`SEARCHERS` and :data:`SCHEDULERS` map each name to its
builders. :mod:`.asha` (ASHA on the reported epoch), :mod:`.optuna` (TPE, its study in the
experiment folder) and :mod:`.pbt` (PBT and PB2 on exact checkpoints); grid and random searches
use Tune's ``BasicVariantGenerator``, or the prefix-sharing searcher (:mod:`tuner.tune.sharing`),
which :func:`tuner.tune.search.run_search` puts in its place.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuner.spaces import Algorithm, SearchSpace
from tuner.training.checkpoints.writer import CHECKPOINTS_DIR
from tuner.tune.params import trial_dirname
from tuner.tune.schedulers.asha import build_asha
from tuner.tune.schedulers.optuna import OPTUNA_DB, build_optuna_search, optuna_storage_url

__all__ = [
    "OPTUNA_DB",
    "SCHEDULERS",
    "SEARCHERS",
    "build_scheduler",
    "build_search_alg",
    "build_tune_config",
    "optuna_storage_url",
]


def _variants(space: SearchSpace, experiment_dir: str | Path) -> Any:
    from ray.tune.search.basic_variant import BasicVariantGenerator

    settings = space.scheduler
    return BasicVariantGenerator(
        max_concurrent=settings.max_concurrent or 0, random_state=settings.seed
    )


def _population(space: SearchSpace, experiment_dir: str | Path, store: str | Path) -> Any:
    from tuner.tune.schedulers.pbt import build_population_scheduler

    return build_population_scheduler(space, experiment_dir, store)


def _asha(space: SearchSpace, experiment_dir: str | Path, store: str | Path) -> Any:
    return build_asha(space)


Builder = Callable[[SearchSpace, "str | Path"], Any]
SchedulerBuilder = Callable[[SearchSpace, "str | Path", "str | Path"], Any]

SEARCHERS: dict[Algorithm, Builder] = {
    Algorithm.GRID: _variants,
    Algorithm.RANDOM: _variants,
    Algorithm.ASHA: _variants,
    Algorithm.OPTUNA: build_optuna_search,
    Algorithm.OPTUNA_ASHA: build_optuna_search,
    Algorithm.PBT: _variants,
    Algorithm.PB2: _variants,
}
"""Algorithm -> its searcher's builder (space, experiment folder)."""
SCHEDULERS: dict[Algorithm, SchedulerBuilder] = {
    Algorithm.ASHA: _asha,
    Algorithm.OPTUNA_ASHA: _asha,
    Algorithm.PBT: _population,
    Algorithm.PB2: _population,
}
"""Algorithm -> its trial scheduler's builder (space, experiment folder, checkpoint store); the
others run every trial to its end (FIFO)."""


def build_search_alg(space: SearchSpace, experiment_dir: str | Path) -> Any:
    """The algorithm's searcher, with the space's ``max_concurrent`` applied here (so leave
    Tune's ``max_concurrent_trials`` unset)."""
    settings = space.scheduler
    searcher = SEARCHERS[Algorithm(settings.algorithm)](space, experiment_dir)
    if settings.uses_optuna and settings.max_concurrent:
        from ray.tune.search import ConcurrencyLimiter

        return ConcurrencyLimiter(searcher, max_concurrent=settings.max_concurrent)
    return searcher


def build_scheduler(
    space: SearchSpace, experiment_dir: str | Path, store: str | Path | None = None
) -> Any:
    """The algorithm's trial scheduler, ``None`` (FIFO) for grid, random and optuna; ``store``:
    the trials' checkpoint store (default: the experiment folder's ``checkpoints``)."""
    builder = SCHEDULERS.get(Algorithm(space.scheduler.algorithm))
    if builder is None:
        return None
    return builder(space, experiment_dir, store or Path(experiment_dir) / CHECKPOINTS_DIR)


def build_tune_config(
    space: SearchSpace, experiment_dir: str | Path, store: str | Path | None = None
) -> Any:
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
        scheduler=build_scheduler(space, experiment_dir, store),
        num_samples=settings.num_samples,
        trial_dirname_creator=trial_dirname,
    )
