"""Optuna's TPE sampler (or NSGA-II, ``scheduler.sampler``) as the searcher of the ``optuna`` and
``optuna+asha`` algorithms, with its study in the experiment folder (``optuna.db``:
``optuna-dashboard`` opens it live). With ``scheduler.cost: flops`` the study has two objectives,
the metric and the configuration's counted FLOPs (``config_flops``, minimised): Optuna then
samples towards the accuracy-versus-cost front rather than one best trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuner.errors import EgotuneError
from tuner.spaces import SearchSpace
from tuner.tune.params import CONFIG_FLOPS, encode_choice

__all__ = ["OPTUNA_DB", "build_optuna_search", "optuna_storage_url"]

OPTUNA_DB = "optuna.db"


def optuna_storage_url(experiment_dir: str | Path) -> str:
    """SQLite URL of the study in the experiment folder (``optuna-dashboard`` opens it live).

    The study is named after the experiment (the folder's name), so studies of two runs of the
    same space stay apart when copied into one database.
    """
    return f"sqlite:///{Path(experiment_dir).resolve() / OPTUNA_DB}"


def build_optuna_search(space: SearchSpace, experiment_dir: str | Path) -> Any:
    """``OptunaSearch`` (TPE, seeded) over the space's distributions, its points evaluated first."""
    optuna = _import_optuna()
    from ray.tune.search.optuna import OptunaSearch

    settings = space.scheduler
    Path(experiment_dir).mkdir(parents=True, exist_ok=True)
    if settings.sampler == "nsga2":
        from tuner.tune.schedulers._nsga2 import PicklableNSGAII

        sampler = PicklableNSGAII(seed=settings.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=settings.seed)
    metric: str | list[str] = settings.metric
    mode: str | list[str] = settings.mode
    if settings.cost is not None:  # two objectives: the metric and the configuration's FLOPs
        metric, mode = [settings.metric, CONFIG_FLOPS], [settings.mode, "min"]
    return OptunaSearch(
        metric=metric,
        mode=mode,
        points_to_evaluate=[
            {k: encode_choice(v, True) for k, v in point.items()}
            for point in settings.points_to_evaluate
        ]
        or None,
        sampler=sampler,
        study_name=Path(experiment_dir).name,
        storage=optuna.storages.RDBStorage(optuna_storage_url(experiment_dir)),
    )


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise EgotuneError(
            "the optuna and optuna+asha algorithms need the optuna package "
            "(pip install 'optuna>=4'); or run this space with --scheduler random or asha"
        ) from None
    return optuna
