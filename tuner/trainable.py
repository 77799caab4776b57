"""The Ray Tune function trainable: the engine, one report and one checkpoint per epoch.

``epoch`` in every report is the engine's global epoch restored from the checkpoint, which is what
ASHA keys on: Ray does not restore scheduler state (Ray #30838) and restarts
``training_iteration`` after a restore, so a checkpoint-derived counter keeps rung decisions
consistent after trial retries and resumed searches.

Each report carries a checkpoint of the full engine state; ``checkpoint_score`` is the validation
accuracy in the run's final stage (and -1 before it), so Tune's checkpoint manager keeps the best
final-stage checkpoint next to the latest one. The checkpoint also holds every metrics row the
trial has reported (``history.json``): when a driver dies before writing rows it had received,
the resumed search recovers them from the checkpoint its trials restart from.

For the Ray dashboard, each trial's actor is named after its trial (``egotune:<trial name>``, where
Ray shows the actor's name) and exports gauges through ``ray.util.metrics`` tagged by experiment
and trial: ``egotune_val_acc``, ``egotune_epoch``, ``egotune_clips_per_s`` and, on a GPU,
``egotune_gpu_memory_bytes`` (Prometheus adds Ray's ``ray_`` prefix).
"""

from __future__ import annotations

import json
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import torch

from data_pipeline import DatasetIndex
from tuner._tune_mapping import resolve_trial_config
from tuner.checkpoint import load_checkpoint, save_checkpoint
from tuner.config import TrainConfig
from tuner.engine import Trainer

__all__ = [
    "ACTOR_NAME_PREFIX",
    "CHECKPOINT_SCORE",
    "HISTORY_FILE",
    "METRIC_NAMES",
    "STATE_FILE",
    "train_trial",
]

STATE_FILE = "state.pt"
HISTORY_FILE = "history.json"
CHECKPOINT_SCORE = "checkpoint_score"
ACTOR_NAME_PREFIX = "egotune:"
METRIC_NAMES = (
    "egotune_val_acc",
    "egotune_epoch",
    "egotune_clips_per_s",
    "egotune_gpu_memory_bytes",
)
_METRIC_TAGS = ("experiment", "trial")


class TrialActorName:
    """Mixin Tune puts in front of the function trainable's actor class (``__mixins__``).

    Tune's wrapper class reports its ``_name`` as the actor's repr, which the dashboard and
    ``ray list actors`` show next to each actor; by default every trial shows the function name.
    """

    _name: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._name = f"{ACTOR_NAME_PREFIX}{self.trial_name}"  # type: ignore[attr-defined]


def train_trial(config: dict[str, Any], *, index: DatasetIndex) -> None:
    """Run one trial; ``index`` arrives through ``tune.with_parameters`` (object store)."""
    from ray import tune

    trainer = Trainer(TrainConfig.from_dict(resolve_trial_config(config)), index)
    checkpoint = tune.get_checkpoint()
    history: list[dict[str, Any]] = []
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            history = _restore(trainer, Path(folder))
    final_stage = trainer.stages[-1]
    context = tune.get_context()
    tags = {"experiment": context.get_experiment_name(), "trial": context.get_trial_name()}
    try:
        for record in trainer.run():
            metrics = record.to_dict()
            metrics[CHECKPOINT_SCORE] = record.val_acc if record.stage == final_stage else -1.0
            _export_metrics(metrics, tags, trainer.device)
            history.append(metrics)
            with tempfile.TemporaryDirectory(prefix="egotune-ckpt-") as folder:
                save_checkpoint(trainer.state_dict(), Path(folder) / STATE_FILE)
                (Path(folder) / HISTORY_FILE).write_text(json.dumps(history))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
    except FloatingPointError as exc:
        # A diverged configuration diverges again from its checkpoint (runs are exactly
        # reproducible), so a retry would only waste the slot: end the trial with what it has.
        print(f"trial stopped: {exc}", flush=True)


def _restore(trainer: Trainer, folder: Path) -> list[dict[str, Any]]:
    """Load the trainer state of a checkpoint folder; returns its reported rows.

    A folder without its state file is a checkpoint whose copy into the storage was cut short
    (the driver and the trial's worker killed together): the trial then starts again from its
    first epoch, which replays the same metrics, and says so.
    """
    if not (folder / STATE_FILE).is_file():
        print(f"trial restarts from epoch 1: {folder} lacks {STATE_FILE} (an interrupted copy)")
        return []
    trainer.load_state_dict(load_checkpoint(folder / STATE_FILE))
    return _read_history(folder)


def _read_history(folder: Path) -> list[dict[str, Any]]:
    path = folder / HISTORY_FILE
    return list(json.loads(path.read_text())) if path.is_file() else []


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
