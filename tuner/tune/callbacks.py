"""Ray Tune callback that streams a search's results into the experiment folder's Parquet tables.

:class:`ParquetResultsCallback` runs in the driver. Each reported result becomes a row of
``epochs.parquet/`` (keyed by trial and epoch) and updates that trial's row of ``trials.parquet``;
both are flushed every ``flush_interval_s`` seconds, when a trial ends and when the experiment
ends (layout and atomicity: :mod:`tuner.results._store`).

Rows are also flushed whenever a trial's checkpoint arrives, before Tune's experiment snapshot
can refer to it: a search resumed after its driver was killed restarts each trial after its
checkpoint, and the rows up to it are then on disk. The trials table's ``checkpoint`` column
names the trial's best-weights file (``<experiment>/checkpoints/<trial_id>/best.pt`` once the
trial ended).

Restores: the folder is the source of truth. When ``Tuner.restore`` builds a fresh callback from
the pickled run configuration, :meth:`ParquetResultsCallback.setup` loads the keys and trial rows
already on disk, so epochs that a restored or retried trial reports again are skipped, and no
callback state has to travel through Tune's experiment checkpoints.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from tuner.errors import EgotuneError
from tuner.results import (
    PREDICTIONS_KEY,
    EpochPartWriter,
    PredictionPartWriter,
    TrialsTableWriter,
)
from tuner.storage import Bucket, TablePush, describe_error
from tuner.training.checkpoints.writer import checkpoint_pointer
from tuner.training.config import flatten_config

if TYPE_CHECKING:
    from ray.tune import Checkpoint
    from ray.tune.experiment import Trial

__all__ = ["ParquetResultsCallback", "epoch_row"]

ConfigResolver = Callable[[Mapping[str, Any]], Mapping[str, Any]]
PlannedEpochs = Callable[[Mapping[str, Any]], int | None]

# Keys Tune adds to every result: bookkeeping, not metrics of the trainable.
_TUNE_RESULT_KEYS = frozenset(
    {
        "config",
        "date",
        "done",
        "experiment_id",
        "experiment_tag",
        "hostname",
        "node_ip",
        "pid",
        "timestamp",
        "training_iteration",
        "iterations_since_restore",
        "timesteps_since_restore",
        "timesteps_total",
        "timesteps_this_iter",
        "episodes_total",
        "episodes_this_iter",
        "trial_id",
        "checkpoint_dir_name",
        "should_checkpoint",
    }
)
_URI_SCHEMES = {"gcs": "gs"}  # pyarrow filesystem type_name -> URI scheme, where they differ


def epoch_row(trial_id: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """The epochs-table row of one Tune ``result``: its metrics, flattened with ``.``.

    Tune's bookkeeping (``config``, ``time_*``, ``training_iteration``, ...) is left out; ``epoch``
    falls back to ``training_iteration`` for trainables that do not report one.
    """
    metrics = {
        key: value
        for key, value in result.items()
        if key not in _TUNE_RESULT_KEYS and not key.startswith(("time_", "__"))
    }
    row = flatten_config(metrics)
    row["trial_id"] = trial_id
    row.setdefault("epoch", result.get("training_iteration"))
    return row


@dataclass
class _TrialProgress:
    """What the driver remembers of one trial besides its trials-table row."""

    latest_checkpoint: str | None = None
    stopped_by_tune: bool = False


class ParquetResultsCallback(Callback):
    """Streams every trial's results to ``<experiment_dir>/epochs.parquet`` and ``trials.parquet``.

    ``config_resolver(trial.config)`` gives the hyperparameters shown in the trials table (default:
    the config itself); nested keys are joined with ``.`` (``alpha.ms``) and ``seed`` gets its own
    column. ``planned_epochs(trial.config)``, when given, is the number of epochs a trial runs if
    nothing stops it: a trial that Tune stopped (scheduler or stopper) is marked ``early_stopped``
    only when it ran fewer. Without it, any trial stopped by Tune counts as early-stopped.

    Driver memory holds the (trial_id, epoch) keys, one summary row per trial and the rows waiting
    for the next flush.
    """

    def __init__(
        self,
        experiment_dir: str | os.PathLike[str],
        *,
        config_resolver: ConfigResolver | None = None,
        planned_epochs: PlannedEpochs | None = None,
        flush_interval_s: float = 5.0,
        upload: str | None = None,
    ) -> None:
        if flush_interval_s < 0:
            raise ValueError(f"flush_interval_s: must be >= 0, got {flush_interval_s!r}")
        self.experiment_dir = Path(experiment_dir)
        self._config_resolver = config_resolver
        self._planned_epochs = planned_epochs
        self._flush_interval_s = flush_interval_s
        self._upload = upload
        self._reset_runtime_state()

    def _reset_runtime_state(self) -> None:
        self._epochs: EpochPartWriter | None = None
        self._predictions: PredictionPartWriter | None = None
        self._trials: TrialsTableWriter | None = None
        self._progress: dict[str, _TrialProgress] = {}
        self._warned_trials: set[str] = set()
        self._next_flush = 0.0
        self._push: TablePush | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles the callback with the run configuration: keep the settings only, the
        # tables are reopened from disk by the unpickled copy.
        settings = ("experiment_dir", "_config_resolver", "_planned_epochs", "_flush_interval_s")
        return {name: self.__dict__[name] for name in (*settings, "_upload")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"_upload": None, **state})
        self._reset_runtime_state()

    # -- Tune hooks ----------------------------------------------------------------------

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        self._open()

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._record_start(trial)

    def on_trial_restore(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._record_start(trial)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        epochs, _ = self._open()
        row = epoch_row(trial.trial_id, result)
        epoch = row["epoch"]
        if not _is_number(epoch) or not float(epoch).is_integer():
            self._warn_bad_epoch(trial, epoch)
            return
        row["epoch"] = int(epoch)
        added = epochs.add(row)
        if added and isinstance(result.get(PREDICTIONS_KEY), Mapping):
            assert self._predictions is not None
            self._predictions.add(trial.trial_id, int(epoch), result[PREDICTIONS_KEY])
        self._update_summary(trial, row, result, added)
        if result.get("done"):
            # Natural completion arrives as a duplicate result that callbacks never see, so a
            # result flagged done here means a scheduler or stopper ended the trial.
            self._progress_of(trial).stopped_by_tune = True
        self._flush_if_due(trials)

    def on_checkpoint(
        self,
        iteration: int,
        trials: list[Trial],
        trial: Trial,
        checkpoint: Checkpoint,
        **info: Any,
    ) -> None:
        # Write the rows reported so far, and the trials table that lists their trial, before
        # Tune's next experiment snapshot can name this checkpoint: a resumed search restarts the
        # trial after it and never reports them again.
        epochs, table = self._open()
        self._flush_rows(epochs)
        table.write()
        self._upload_tables()
        progress = self._progress_of(trial)
        progress.latest_checkpoint = _checkpoint_uri(checkpoint)
        best = _best_weights_file(checkpoint, self._upload or self.experiment_dir, trial.trial_id)
        if best is not None:
            table.update(trial.trial_id, {"checkpoint": best})
        else:  # a trainable that does not write egotune's pointers
            table.update(trial.trial_id, {"checkpoint": progress.latest_checkpoint})

    def on_trial_recover(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        _, table = self._open()
        table.update(trial.trial_id, {"status": "PENDING", "num_failures": trial.num_failures})

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        # Tune marks the trial TERMINATED only after this hook returns.
        self._record_end(trial, "TERMINATED")

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._record_end(trial, "ERROR")

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self._flush_if_due(trials)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        _, table = self._open()
        table.forget_unknown({trial.trial_id for trial in trials})
        self.flush(trials)

    # -- bookkeeping ---------------------------------------------------------------------

    def flush(self, trials: list[Trial] | None = None) -> None:
        """Write buffered epoch rows and, if it changed, the trials table.

        ``trials`` (Tune's list) first brings the status of every trial up to date, which adds
        trials not started yet as PENDING and shows PAUSED ones.
        """
        epochs, table = self._open()
        for trial in trials or ():
            if trial.trial_id not in table:
                table.update(trial.trial_id, self._hyperparameters(trial))
            if table.get(trial.trial_id).get("status") != trial.status:
                table.update(trial.trial_id, {"status": trial.status})
        self._flush_rows(epochs)
        table.write()
        self._upload_tables()
        self._next_flush = time.monotonic() + self._flush_interval_s

    def _upload_tables(self) -> None:
        """A search on a bucket: send what the flush wrote (part files once, the trials table
        when it changed) before Tune's next experiment snapshot can refer to its checkpoints.
        A bucket that cannot be reached stops the search, which ``--resume`` continues."""
        if self._upload is None:
            return
        if self._push is None:
            self._push = TablePush(self.experiment_dir, Bucket(self._upload))
        try:
            self._push.push()
        except OSError as exc:
            raise EgotuneError(
                f"--storage {self._upload}: uploading the tables failed ({describe_error(exc)}); "
                f"what was written is kept: resume the search once it is reachable again"
            ) from None

    def _flush_if_due(self, trials: list[Trial]) -> None:
        if time.monotonic() >= self._next_flush:
            self.flush(trials)

    def _flush_rows(self, epochs: EpochPartWriter) -> None:
        # predictions first: an epoch row on disk promises its predictions are there too
        if self._predictions is not None:
            self._predictions.flush()
        epochs.flush()

    def _open(self) -> tuple[EpochPartWriter, TrialsTableWriter]:
        if self._epochs is None or self._trials is None:
            self._epochs = EpochPartWriter(
                self.experiment_dir, flush_interval_s=self._flush_interval_s
            )
            self._predictions = PredictionPartWriter(self.experiment_dir)
            self._trials = TrialsTableWriter(self.experiment_dir)
            self._next_flush = time.monotonic() + self._flush_interval_s
        return self._epochs, self._trials

    def _warn_bad_epoch(self, trial: Trial, epoch: Any) -> None:
        if trial.trial_id not in self._warned_trials:
            self._warned_trials.add(trial.trial_id)
            warnings.warn(
                f"trial {trial.trial_id}: result without a whole-number 'epoch' "
                f"({epoch!r}) is not recorded",
                stacklevel=3,
            )

    def _progress_of(self, trial: Trial) -> _TrialProgress:
        return self._progress.setdefault(trial.trial_id, _TrialProgress())

    def _hyperparameters(self, trial: Trial) -> dict[str, Any]:
        config = trial.config
        resolved = self._config_resolver(config) if self._config_resolver else config
        values = flatten_config(resolved)
        return {**values, "seed": values.get("seed")}

    def _record_start(self, trial: Trial) -> None:
        # the hyperparameters too: a population search changes them when a trial continues
        # from another's state, and the table shows the values the trial runs with now
        _, table = self._open()
        values = {"status": "RUNNING", "num_failures": trial.num_failures}
        table.update(trial.trial_id, {**self._hyperparameters(trial), **values})

    def _update_summary(
        self, trial: Trial, row: Mapping[str, Any], result: Mapping, added: bool
    ) -> None:
        _, table = self._open()
        current = table.get(trial.trial_id)
        if not current:
            current = {**self._hyperparameters(trial), "status": "RUNNING"}
        epoch = row["epoch"]
        best, best_epoch = row.get("best_val_acc"), row.get("best_epoch")
        if not _is_number(best):
            best, best_epoch = row.get("val_acc"), epoch
        changes: dict[str, Any] = {
            "epochs_run": max(epoch, current.get("epochs_run") or 0),
            "wall_seconds": (current.get("wall_seconds") or 0.0) + _iteration_seconds(result),
        }
        if added:  # the trial's cost: each epoch row once, also across a resumed search
            changes.update(_epoch_cost(trial, row, current))
        previous_best = current.get("best_val_acc")
        if _is_number(best) and (previous_best is None or best > previous_best):
            changes.update(best_val_acc=best, best_epoch=best_epoch)
        table.update(trial.trial_id, {**current, **changes})

    def _record_end(self, trial: Trial, status: str) -> None:
        _, table = self._open()
        progress = self._progress_of(trial)
        row = table.get(trial.trial_id)
        changes: dict[str, Any] = {"status": status, "num_failures": trial.num_failures}
        if status == "TERMINATED":
            changes["early_stopped"] = self._early_stopped(trial, progress, row)
        table.update(trial.trial_id, changes)
        self.flush()
        self._progress.pop(trial.trial_id, None)

    def _early_stopped(self, trial: Trial, progress: _TrialProgress, row: Mapping) -> bool:
        if not progress.stopped_by_tune:
            return False
        planned = self._planned_epochs(trial.config) if self._planned_epochs else None
        return planned is None or (row.get("epochs_run") or 0) < planned


def _epoch_cost(trial: Trial, row: Mapping[str, Any], current: Mapping[str, Any]) -> dict:
    """``flops`` and ``gpu_seconds`` of the trial with the epoch ``row`` added: its counted
    FLOPs, and its seconds times the GPUs the trial holds (0 for a CPU trial)."""
    changes = {}
    if _is_number(row.get("flops")):
        changes["flops"] = (current.get("flops") or 0.0) + float(row["flops"])
    if _is_number(row.get("seconds")):
        resources = trial.placement_group_factory
        gpus = float(resources.required_resources.get("GPU", 0.0)) if resources else 0.0
        changes["gpu_seconds"] = (current.get("gpu_seconds") or 0.0) + gpus * float(row["seconds"])
    return changes


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _iteration_seconds(result: Mapping[str, Any]) -> float:
    seconds = result.get("time_this_iter_s", result.get("seconds"))
    return float(seconds) if _is_number(seconds) else 0.0


def _checkpoint_uri(checkpoint: Any) -> str:
    """``checkpoint``'s location: a local path, or ``scheme://path`` on remote storage."""
    kind = getattr(getattr(checkpoint, "filesystem", None), "type_name", "local")
    if kind == "local":
        return str(checkpoint.path)
    return f"{_URI_SCHEMES.get(kind, kind)}://{checkpoint.path}"


def _best_weights_file(checkpoint: Any, experiment: str | Path, trial_id: str) -> str | None:
    """The best-weights file a trial's pointer checkpoint names (the complete ``best.pt`` once
    the trial ended) in the experiment folder or bucket URI ``experiment``, or ``None`` for a
    checkpoint without a pointer."""
    from tuner.tune.trainable import CHECKPOINTS_DIR

    pointer = checkpoint_pointer(checkpoint)
    name = pointer.get("final_best") or pointer.get("best") if pointer else None
    if not name:
        return None
    return f"{experiment}/{CHECKPOINTS_DIR}/{trial_id}/{name}"
