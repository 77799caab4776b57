"""Optuna's TPE sampler as the searcher of the ``optuna`` and ``optuna+asha`` algorithms, with its
study in the experiment folder (``optuna.db``: ``optuna-dashboard`` opens it live)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuner.errors import EgotuneError
from tuner.spaces import SearchSpace
from tuner.tune.params import encode_choice

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
    return OptunaSearch(
        metric=settings.metric,
        mode=settings.mode,
        points_to_evaluate=[
            {k: encode_choice(v, True) for k, v in point.items()}
            for point in settings.points_to_evaluate
        ]
        or None,
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
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
