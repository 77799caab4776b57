"""Population-based training (Ray Tune's PBT and PB2) on egotune's exact checkpoints.

Both run synchronously on the reported ``epoch``: every ``perturbation_interval`` epochs each
trial writes its resume state before it reports the epoch (``_population`` in its config tells
the trainable when), waits until the whole population reached that epoch, and the bottom
``quantile_fraction`` continue from a top trial's state of that same epoch with explored
hyperparameters. So an exploited trial's epochs go on where they were (its table has each epoch
once), and the state it continues from is the donor's at exactly that epoch.

What this adds to Ray's schedulers, in :meth:`_ExactExploits._exploit`:

* the donor's state must be on disk (a pointer checkpoint naming an existing state file), or
  the exploit is skipped: a trial never continues from a trial without a checkpoint (Ray #27170);
* the donor's files are hard-linked (copied where links are not possible) into the recipient's
  folder before the recipient restarts, so the donor pruning its old states cannot take them
  away, and no checkpoint is shared between two trials' folders (Ray #28509);
* each exploit is a row of ``<experiment>/exploits.parquet``: recipient, donor, epoch, the
  recipient's generation (exploits so far) and the old and new value of every mutated key.

The trainable applies the new values exactly: :meth:`tuner.engine.Trainer.continue_from` keeps
the donor's weights, optimiser moments, RNG and data order and takes the recipient's learning
rate, weight decay and schedule.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from tuner.spaces import SearchSpace

__all__ = [
    "PINNED_PREFIX",
    "POPULATION_KEY",
    "pin_donor_files",
    "population_config",
]

POPULATION_KEY = "_population"
"""Config entry of a population trial: ``{"interval", "keys", "generation"}``."""
PINNED_PREFIX = "from-"
"""``<trial folder>/from-<donor>-<file>``: a donor's file pinned for an exploit."""


def population_config(space: SearchSpace) -> dict[str, Any]:
    """The ``_population`` entry every trial of a population search starts with."""
    settings = space.scheduler
    assert settings.mutations is not None and settings.perturbation_interval is not None
    return {
        "interval": settings.perturbation_interval,
        "keys": sorted(settings.mutations),
        "generation": 0,
    }


def pin_donor_files(store: Path, trial_id: str, donor_id: str, pointer: dict[str, Any]) -> bool:
    """Link the donor's state (and the best weights it names) into the recipient's folder;
    ``False`` when the state is not on disk."""
    names = [pointer.get("state"), pointer.get("best")]
    source = store / donor_id
    if not names[0] or not (source / str(names[0])).is_file():
        return False
    target = store / trial_id
    target.mkdir(parents=True, exist_ok=True)
    for name in filter(None, names):
        pinned = target / f"{PINNED_PREFIX}{donor_id}-{name}"
        if pinned.exists() or not (source / name).is_file():
            continue
        try:
            os.link(source / name, pinned)
        except OSError:
            shutil.copy2(source / name, pinned)
    return True
