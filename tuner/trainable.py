"""The Ray Tune function trainable: the engine, one report per epoch, periodic checkpoints.

``epoch`` in every report is the engine's global epoch restored from the checkpoint, which is what
ASHA keys on: Ray does not restore scheduler state (Ray #30838) and restarts
``training_iteration`` after a restore, so a checkpoint-derived counter keeps rung decisions
consistent after trial retries and resumed searches.

Checkpoints follow :mod:`tuner._checkpoints`: the trial's files live in
``<experiment>/checkpoints/<trial_id>/`` (resume states every ``checkpoint_every`` epochs and at
stage and trial ends, best weights when they changed, ``best.pt`` complete at the end), written
off the training thread. Ray Tune receives, with the first report after a write completed, a
checkpoint holding only ``pointer.json``, which names those files: Tune persists it in
milliseconds, keeps every one (no forced experiment snapshots) and restores a retried or resumed
trial from the newest one it registered. A trial restored from a pointer whose state file is gone
(pruned, or an interrupted write) starts again from its first epoch, which replays the same
metrics, and says so.

Each epoch row carries where the loop's time went (``train_s``, ``data_wait_s``, ``val_s`` from
the engine; ``checkpoint_s``: seconds the loop was blocked by checkpointing after this epoch;
``checkpoint_bytes``: bytes that checkpoint persists; ``report_s``: seconds the previous epoch's
report to Tune blocked the loop) and the first row of each run of the trial ``startup_s``: from
the worker's start (or the end of the previous trial on a reused worker) to the first epoch.

For the Ray dashboard, each trial's actor is named after its trial (``egotune:<trial name>``, where
Ray shows the actor's name, also when Tune reuses the actor for the next trial) and exports gauges
through ``ray.util.metrics`` tagged by experiment and trial: ``egotune_val_acc``,
``egotune_epoch``, ``egotune_clips_per_s`` and, on a GPU, ``egotune_gpu_memory_bytes``
(Prometheus adds Ray's ``ray_`` prefix).
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

import torch

from data_pipeline import DatasetIndex
from tuner._checkpoints import (
    CheckpointFolder,
    CheckpointPolicy,
    RunCheckpoints,
    SavedCheckpoint,
    resume_run,
)
from tuner._tune_mapping import resolve_trial_config
from tuner.checkpoint import load_checkpoint
from tuner.config import TrainConfig
from tuner.engine import Trainer
from tuner.results import PREDICTIONS_KEY

__all__ = [
    "ACTOR_NAME_PREFIX",
    "CHECKPOINTS_DIR",
    "LEGACY_STATE_FILE",
    "METRIC_NAMES",
    "POINTER_FILE",
    "read_pointer",
    "train_trial",
]

CHECKPOINTS_DIR = "checkpoints"
"""Folder of the trials' checkpoint files, in the experiment folder."""
POINTER_FILE = "pointer.json"
LEGACY_STATE_FILE = "state.pt"
"""Full state inside a Tune checkpoint, as earlier versions wrote it (still restored)."""
ACTOR_NAME_PREFIX = "egotune:"
METRIC_NAMES = (
    "egotune_val_acc",
    "egotune_epoch",
    "egotune_clips_per_s",
    "egotune_gpu_memory_bytes",
)
_METRIC_TAGS = ("experiment", "trial")
_PREVIOUS_TRIAL_END: list[float] = []  # on a reused worker, when its previous trial ended


class TrialActorName:
    """Mixin Tune puts in front of the function trainable's actor class (``__mixins__``).

    Tune's wrapper class reports its ``_name`` as the actor's repr, which the dashboard and
    ``ray list actors`` show next to each actor; by default every trial shows the function name.
    A reused actor takes the name of each new trial.
    """

    _name: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._name = f"{ACTOR_NAME_PREFIX}{self.trial_name}"  # type: ignore[attr-defined]

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        reset: bool = super().reset_config(new_config)  # type: ignore[misc]
        self._name = f"{ACTOR_NAME_PREFIX}{self.trial_name}"  # type: ignore[attr-defined]
        return reset


def train_trial(config: dict[str, Any], *, index: DatasetIndex, store: str) -> None:
    """Run one trial; ``index`` and ``store`` (the experiment's checkpoint folder) arrive through
    ``tune.with_parameters``."""
    from ray import tune

    context = tune.get_context()
    entered = time.perf_counter()
    trainer = Trainer(TrainConfig.from_dict(resolve_trial_config(config)), index)
    folder = CheckpointFolder(Path(store) / context.get_trial_id())
    checkpoints = RunCheckpoints(trainer, folder, CheckpointPolicy(trainer.config.checkpoint_every))
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as pointer_dir:
            _restore(trainer, checkpoints, folder, Path(pointer_dir))
    tags = {"experiment": context.get_experiment_name(), "trial": context.get_trial_name()}
    stopped = True
    try:
        _train(trainer, checkpoints, tags, startup_s=_startup_s(entered))
        stopped = False
    except FloatingPointError as exc:
        # A diverged configuration diverges again from its checkpoint (runs are exactly
        # reproducible), so a retry would only waste the slot: end the trial with what it has.
        print(f"trial stopped: {exc}", flush=True)
        stopped = False
    finally:
        # Stopped by Tune (ASHA): Tune waits briefly for this thread before reusing the worker,
        # so the write in flight finishes in the background instead.
        device = trainer.device
        checkpoints.close(wait=not stopped)
        del trainer, checkpoints
        _release(device)


def _train(
    trainer: Trainer, checkpoints: RunCheckpoints, tags: dict[str, str], startup_s: float
) -> None:
    from ray import tune

    report_s = 0.0
    extra: dict[str, Any] = {"startup_s": startup_s}
    for record in trainer.run():
        metrics = {**record.to_dict(), **extra, PREDICTIONS_KEY: record.predictions}
        stage_epochs = trainer.config.stage_settings(trainer.stage).epochs or 0
        stage_end = trainer.stage_epoch >= stage_epochs
        blocked, size = checkpoints.after_epoch(
            record.train_s + record.data_wait_s + record.val_s,
            stage_end=stage_end,
            last=trainer.finished,
        )
        metrics.update(checkpoint_s=blocked, checkpoint_bytes=size, report_s=report_s)
        _export_metrics(metrics, tags, trainer.device)
        saved = checkpoints.completed
        start = time.perf_counter()
        if saved:
            with tempfile.TemporaryDirectory(prefix="egotune-pointer-") as pointer_dir:
                _write_pointer(Path(pointer_dir), saved[-1])
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(pointer_dir))
        else:
            tune.report(metrics)
        report_s = time.perf_counter() - start
        extra = {}


def read_pointer(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``pointer.json`` of a Tune checkpoint folder, or ``None`` when it has none."""
    path = Path(folder) / POINTER_FILE
    if not path.is_file():
        return None
    pointer: dict[str, Any] = json.loads(path.read_text())
    return pointer


def _write_pointer(folder: Path, saved: SavedCheckpoint) -> None:
    (folder / POINTER_FILE).write_text(json.dumps(saved.pointer()))


def _restore(
    trainer: Trainer, checkpoints: RunCheckpoints, folder: CheckpointFolder, pointer_dir: Path
) -> None:
    """Continue from the checkpoint Tune restores the trial from (a pointer, or a full state of
    an earlier version); from the first epoch when its state file is gone."""
    if (pointer_dir / LEGACY_STATE_FILE).is_file():
        trainer.load_state_dict(load_checkpoint(pointer_dir / LEGACY_STATE_FILE))
        return
    pointer = read_pointer(pointer_dir)
    state_path = folder.path(pointer["state"]) if pointer else None
    if state_path is None or not state_path.is_file():
        print(f"trial restarts from epoch 1: its checkpoint {state_path} is gone", flush=True)
        return
    resume_run(trainer, checkpoints, state_path)


def _startup_s(entered: float) -> float:
    """Seconds from the worker's start, or the end of its previous trial, to now."""
    now = time.perf_counter()
    if _PREVIOUS_TRIAL_END:
        return now - _PREVIOUS_TRIAL_END[-1]
    return max(_process_age(), now - entered)


def _process_age() -> float:
    """Seconds since this process started (Linux ``/proc``; 0 where it cannot be read)."""
    try:
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(uptime - int(stat[19]) / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return 0.0


def _release(device: torch.device) -> None:
    """Free the trial's GPU memory (its last references are gone) so that a reused worker
    starts the next trial clean."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    _PREVIOUS_TRIAL_END[:] = [time.perf_counter()]


train_trial.__mixins__ = (TrialActorName,)  # type: ignore[attr-defined]


@cache
def _gauges() -> dict[str, Any]:
    """One gauge per exported metric, created once per worker process."""
    from ray.util.metrics import Gauge

    return {
        name: Gauge(name, description=description, tag_keys=_METRIC_TAGS)
        for name, description in zip(
            METRIC_NAMES,
            (
                "validation accuracy (%) of the trial's latest epoch",
                "latest finished epoch of the trial",
                "training clips per second in the trial's latest epoch",
                "peak GPU memory allocated by the trial's process (bytes)",
            ),
            strict=True,
        )
    }


def _export_metrics(metrics: dict[str, Any], tags: dict[str, str], device: torch.device) -> None:
    gauges = _gauges()
    gauges["egotune_val_acc"].set(float(metrics["val_acc"]), tags=tags)
    gauges["egotune_epoch"].set(float(metrics["epoch"]), tags=tags)
    gauges["egotune_clips_per_s"].set(float(metrics["clips_per_s"]), tags=tags)
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(device)
        gauges["egotune_gpu_memory_bytes"].set(float(memory), tags=tags)
