"""The Ray Tune function trainable: the engine, one report and one checkpoint per epoch.

``epoch`` in every report is the engine's global epoch restored from the checkpoint, which is what
ASHA keys on: Ray does not restore scheduler state (Ray #30838) and restarts
``training_iteration`` after a restore, so a checkpoint-derived counter keeps rung decisions
consistent after trial retries and resumed searches.

Each report carries a checkpoint of the full engine state; ``checkpoint_score`` is the validation
accuracy in the run's final stage (and -1 before it), so Tune's checkpoint manager keeps the best
final-stage checkpoint next to the latest one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from data_pipeline import DatasetIndex
from tuner._tune_mapping import resolve_trial_config
from tuner.checkpoint import load_checkpoint, save_checkpoint
from tuner.config import TrainConfig
from tuner.engine import Trainer

__all__ = ["CHECKPOINT_SCORE", "STATE_FILE", "train_trial"]

STATE_FILE = "state.pt"
CHECKPOINT_SCORE = "checkpoint_score"


def train_trial(config: dict[str, Any], *, index: DatasetIndex) -> None:
    """Run one trial; ``index`` arrives through ``tune.with_parameters`` (object store)."""
    from ray import tune

    trainer = Trainer(TrainConfig.from_dict(resolve_trial_config(config)), index)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.load_state_dict(load_checkpoint(Path(folder) / STATE_FILE))
    final_stage = trainer.stages[-1]
    try:
        for record in trainer.run():
            metrics = record.to_dict()
            metrics[CHECKPOINT_SCORE] = record.val_acc if record.stage == final_stage else -1.0
            with tempfile.TemporaryDirectory(prefix="egotune-ckpt-") as folder:
                save_checkpoint(trainer.state_dict(), Path(folder) / STATE_FILE)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
    except FloatingPointError as exc:
        # A diverged configuration diverges again from its checkpoint (runs are exactly
        # reproducible), so a retry would only waste the slot: end the trial with what it has.
        print(f"trial stopped: {exc}", flush=True)
