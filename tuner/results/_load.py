"""Reading an experiment folder: where it is, its tables as DataFrames, older layouts upgraded."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tuner.errors import EgotuneError
from tuner.results._metadata import METADATA_FILE, default_storage, read_experiment_metadata
from tuner.results._predictions import read_predictions, shared_predictions
from tuner.results._remote import is_uri, mirror_storage
from tuner.results._store import (
    COMPUTED_BY,
    EPOCH_SCHEMA,
    EPOCHS_DIR,
    EXPLOIT_ID,
    SCHEMA_VERSION,
    TRIALS_FILE,
    read_epochs,
    read_exploits,
    read_trials,
)

__all__ = [
    "FINISHED",
    "Experiment",
    "confirmed_exploits",
    "hashable",
    "hyperparameter_columns",
    "is_experiment_dir",
    "load_experiment",
    "require_columns",
    "resolve_experiment",
    "upgrade_epochs",
    "upgrade_trials",
    "varying_columns",
]

FINISHED = "TERMINATED"
"""Status of a trial that ended (ran all its epochs or was stopped early by the scheduler)."""


_SUMMARY_DEFAULTS: dict[str, Any] = {
    "status": FINISHED,  # tables without a status column were written once the search ended
    "best_val_acc": np.nan,
    "best_epoch": pd.NA,
    "epochs_run": pd.NA,
    "wall_seconds": np.nan,
    "flops": np.nan,  # tables of searches before costs were counted
    "gpu_seconds": np.nan,
    "checkpoint": None,
    "early_stopped": pd.NA,
    "num_failures": 0,
}


_NOT_HYPERPARAMETERS = {"trial_id", *_SUMMARY_DEFAULTS}


def is_experiment_dir(path: Path) -> bool:
    names = (TRIALS_FILE, EPOCHS_DIR, METADATA_FILE)
    return path.is_dir() and any((path / name).exists() for name in names)


def resolve_experiment(exp: str | os.PathLike[str], storage: str | os.PathLike[str] | None) -> Path:
    """The folder of experiment ``exp``: a name under ``storage`` or a path to the folder itself.

    Raises :class:`EgotuneError` naming what was looked for when neither exists.
    """
    if is_uri(storage):
        root = mirror_storage(str(storage), [str(exp)])
    else:
        root = Path(storage).expanduser() if storage is not None else default_storage()
    candidate = root / exp
    if is_experiment_dir(candidate):
        return candidate
    direct = Path(exp).expanduser()
    if is_experiment_dir(direct):
        return direct
    raise EgotuneError(
        f"experiment {str(exp)!r}: no results in {candidate} "
        f"(list them with: egotune results list --storage {root})"
    )


@dataclass(frozen=True)
class Experiment:
    """One experiment's tables, as read at one moment."""

    name: str
    path: Path
    trials: pd.DataFrame
    """One row per trial (``trials.parquet``), summary columns filled for older tables."""
    epochs: pd.DataFrame
    """One row per (trial_id, epoch) from the completed part files, sorted by them."""
    metadata: dict[str, Any]
    """``experiment.json`` (empty when the folder has none)."""
    schema_version: int
    """Version of the trials table as written (0 for tables that predate versioning)."""

    @cached_property
    def predictions(self) -> pd.DataFrame:
        """``predictions.parquet`` (one row per trial, epoch and validation video), read on first
        use; empty for experiments written before it existed."""
        listed = list(self.trials["trial_id"])
        return shared_predictions(read_predictions(self.path, listed=listed), self.epochs)

    @cached_property
    def exploits(self) -> pd.DataFrame:
        """``exploits.parquet`` of a population search (PBT, PB2): one row per exploit, with
        the recipient, the donor, the epoch, the recipient's generation and ``old.<key>`` /
        ``new.<key>`` per mutated key; empty for other searches.

        Only exploits the recipient went on from: the scheduler writes a row when it decides
        one, and a driver killed before Tune saved that decision leaves a row no trial followed
        (on ``--resume`` the trial goes on from its own state, and may be exploited again at the
        same epoch). Every epoch of a population trial reports the id of the last exploit behind
        its config, so a row stands when its trial reported the next epoch under its id (a live
        search shows an exploit from then on).
        """
        return confirmed_exploits(read_exploits(self.path), self.epochs)

    @property
    def hyperparameters(self) -> list[str]:
        """The hyperparameter columns of :attr:`trials`, ``seed`` included."""
        return hyperparameter_columns(self.trials)

    @property
    def finished(self) -> pd.DataFrame:
        """The trials that ended, with a value in ``best_val_acc``."""
        done = self.trials[self.trials["status"] == FINISHED]
        return done.dropna(subset=["best_val_acc"])


def confirmed_exploits(exploits: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``exploits`` whose trial reported the epoch after them under their exploit
    id (all of them for tables written before exploits had ids)."""
    if exploits.empty or EXPLOIT_ID not in exploits.columns:
        return exploits
    if EXPLOIT_ID not in epochs.columns:
        return exploits.iloc[:0]
    ran = epochs.dropna(subset=[EXPLOIT_ID])
    followed = set(zip(ran["trial_id"], ran["epoch"].astype(int), ran[EXPLOIT_ID], strict=True))
    keep = [
        (trial, int(epoch) + 1, exploit) in followed
        for trial, epoch, exploit in zip(
            exploits["trial_id"], exploits["epoch"], exploits[EXPLOIT_ID], strict=True
        )
    ]
    return exploits[keep].reset_index(drop=True)


def load_experiment(
    exp: str | os.PathLike[str], storage: str | os.PathLike[str] | None = None
) -> Experiment:
    """Read experiment ``exp`` (a name under ``storage``, or a folder path) into DataFrames."""
    path = resolve_experiment(exp, storage)
    listed = read_trials(path)
    epochs = upgrade_epochs(read_epochs(path, listed=list(listed["trial_id"])))
    trials = upgrade_trials(listed, epochs)
    try:
        metadata = read_experiment_metadata(path)
    except FileNotFoundError:
        metadata = {}
    except (OSError, ValueError) as exc:
        raise EgotuneError(
            f"{path / METADATA_FILE}: unreadable ({exc}); restore it from a backup"
        ) from None
    return Experiment(path.name, path, trials, epochs, metadata, _trials_schema_version(path))


def _trials_schema_version(path: Path) -> int:
    file = path / TRIALS_FILE
    if not file.is_file():
        return SCHEMA_VERSION
    try:
        metadata = pq.read_schema(file).metadata or {}
    except (OSError, ValueError):
        return SCHEMA_VERSION
    return int(metadata.get(b"schema_version", b"0"))


def upgrade_epochs(epochs: pd.DataFrame) -> pd.DataFrame:
    """``epochs`` with every column of the current layout; older tables lack some.

    A table without stages is one stage long (``stage`` 1, ``stage_epoch`` = ``epoch``); missing
    metrics are NaN.
    """
    epochs = epochs.copy()
    if "stage" not in epochs.columns:
        epochs["stage"] = 1
    if "stage_epoch" not in epochs.columns:
        epochs["stage_epoch"] = epochs["epoch"]
    if COMPUTED_BY not in epochs.columns:
        epochs[COMPUTED_BY] = epochs["trial_id"]
    epochs[COMPUTED_BY] = epochs[COMPUTED_BY].fillna(epochs["trial_id"])
    for name in EPOCH_SCHEMA.names:
        if name not in epochs.columns and name != "extra":
            epochs[name] = np.nan
    return epochs


def upgrade_trials(trials: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """``trials`` with every summary column of the current layout; older tables lack some.

    ``best_val_acc``, ``best_epoch`` and ``epochs_run`` missing from the table are computed from
    ``epochs``; other missing columns take their neutral value.
    """
    trials = trials.copy()
    derived = _summary_from_epochs(epochs)
    for name, default in _SUMMARY_DEFAULTS.items():
        if name in trials.columns:
            continue
        if name in derived.columns:
            trials[name] = trials["trial_id"].map(derived[name])
        else:
            trials[name] = default
    return _caught_up(trials, derived)


def _caught_up(trials: pd.DataFrame, derived: pd.DataFrame) -> pd.DataFrame:
    """``trials`` with the summary of every row the epochs table is ahead of taken from it.

    ``trials.parquet`` is rewritten when the driver hears of a trial; after a driver killed
    between an epoch's part file and that rewrite (or while a search runs), a row can say
    PENDING with no accuracy while its epochs are on disk. The epochs are the record."""
    if derived.empty or trials.empty:
        return trials
    on_disk = pd.to_numeric(trials["trial_id"].map(derived["epochs_run"]), errors="coerce")
    recorded = pd.to_numeric(trials["epochs_run"], errors="coerce")
    behind = on_disk.notna() & (recorded.isna() | (recorded < on_disk))
    if behind.any():
        trials = trials.astype({"best_val_acc": float, "best_epoch": object, "epochs_run": object})
        for name in ("best_val_acc", "best_epoch", "epochs_run"):
            trials.loc[behind, name] = trials.loc[behind, "trial_id"].map(derived[name])
    return trials


def _summary_from_epochs(epochs: pd.DataFrame) -> pd.DataFrame:
    """Per trial_id: best_val_acc, best_epoch and epochs_run computed from the epoch rows."""
    runs = epochs.dropna(subset=["val_acc"])
    if runs.empty:
        return pd.DataFrame(columns=["best_val_acc", "best_epoch", "epochs_run"])
    best_rows = runs.loc[runs.groupby("trial_id")["val_acc"].idxmax()].set_index("trial_id")
    return pd.DataFrame(
        {
            "best_val_acc": best_rows["val_acc"],
            "best_epoch": best_rows["epoch"],
            "epochs_run": epochs.groupby("trial_id")["epoch"].max(),
        }
    )


def hyperparameter_columns(trials: pd.DataFrame) -> list[str]:
    """Columns of ``trials`` that hold the trial's configuration, ``seed`` included.

    Per-trial paths (``checkpoint``, ``init_checkpoint``, any ``*_checkpoint``) are left out: two
    runs of one configuration differ there.
    """
    return [
        name
        for name in trials.columns
        if name not in _NOT_HYPERPARAMETERS and not str(name).endswith("checkpoint")
    ]


def varying_columns(trials: pd.DataFrame, columns: Sequence[str] | None = None) -> list[str]:
    """The hyperparameter columns (or ``columns``) that take more than one value in ``trials``."""
    names = hyperparameter_columns(trials) if columns is None else list(columns)
    values = hashable(trials, names)
    return [n for n in names if values[n].nunique(dropna=False) > 1]


def hashable(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` with list values (``milestones``) in ``columns`` as JSON text, ``[30, 70]``."""
    frame = frame.copy()
    for name in columns:
        if frame[name].dtype == object:
            frame[name] = frame[name].map(_hashable_value)
    return frame


def _hashable_value(value: Any) -> Any:
    if isinstance(value, list | tuple | np.ndarray):
        return json.dumps([v.item() if hasattr(v, "item") else v for v in value])
    return value


def require_columns(frame: pd.DataFrame, names: Sequence[str], what: str) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        known = ", ".join(str(c) for c in frame.columns)
        raise ValueError(f"{what}: no column {', '.join(missing)} in the trials (columns: {known})")
