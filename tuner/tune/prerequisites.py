"""A space's prerequisite runs: the models its trials start from, each trained once.

A prerequisite (``prerequisites:`` in a space file, docs/search-spaces.md) is a run whose best
checkpoint some trials take as a path key, e.g. the stage-1 model that a stage-2 grid starts
from (``init_checkpoint``). Each run trains as a one-trial Tuner with the space's per-trial
resources, in ``<storage>/_prerequisites/<name>-<digest>/``, the digest taken over what the run
computes (its configuration without the runtime keys) and the dataset's fingerprint; a later
search with the same run and data reuses its checkpoint instead of training it again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from data_pipeline import DatasetIndex
from tuner.errors import EgotuneError
from tuner.spaces import PrerequisiteRun, SearchSpace
from tuner.storage import file_exists, read_file, write_file
from tuner.training.checkpoints.writer import checkpoint_pointer
from tuner.training.config import RUNTIME_KEYS, TrainConfig
from tuner.tune.console import build_progress_reporter, select_classic_console
from tuner.tune.interrupt import graceful_interrupt
from tuner.tune.params import trial_resources, with_recipe_modules
from tuner.tune.trainable import CHECKPOINTS_DIR, checkpoint_config, train_trial

__all__ = ["PREREQUISITES_DIR", "Checkpoints", "run_prerequisites"]

PREREQUISITES_DIR = "_prerequisites"
_RECORD = "prerequisite.json"
Checkpoints = dict[str, dict[tuple[tuple[str, Any], ...], str]]
"""Checkpoint path of each prerequisite run, by prerequisite name and match."""

# Keys a prerequisite run takes from the trials when its own config does not set them: they
# decide weight shapes or where and how the run executes, so a mismatch could not be loaded.
_INHERITED_KEYS = (
    "backbone",
    "weights",
    "crop_size",
    "mem_size",
    "cam",
    "flow_stack",
    "device",
    "precision",
    "channels_last",
    "compile",
    "num_workers",
    "pin_memory",
    "train_users",
    "val_users",
    "batch_size",
    "drop_last",
)


def run_prerequisites(
    space: SearchSpace,
    index: DatasetIndex,
    storage: Path | str,
    fingerprint: str,
    max_failures: int,
    verbose: int,
) -> Checkpoints:
    """Execute (or reuse) every prerequisite run of ``space`` in ``storage`` (a folder or a
    bucket URI); returns the checkpoint paths (or URIs) by prerequisite name and match (the
    values of the trials it serves)."""
    done: Checkpoints = {}
    for run in space.prerequisite_runs():
        config = _prerequisite_config(space, run, done)
        path = _run_prerequisite(
            run.name,
            config,
            index,
            storage,
            fingerprint,
            trial_resources(space),
            (max_failures, verbose),
        )
        done.setdefault(run.name, {})[run.match] = path
    return done


def _prerequisite_config(
    space: SearchSpace,
    run: PrerequisiteRun,
    done: Checkpoints,
) -> dict[str, Any]:
    config = dict(run.config)
    for key in _INHERITED_KEYS:
        if key not in config and key in space.fixed:
            config[key] = space.fixed[key]
    for name, match in run.requires:
        config[space.prerequisites[name].provides] = done[name][match]
    return config


def _run_prerequisite(
    name: str,
    flat_config: dict[str, Any],
    index: DatasetIndex,
    storage: Path | str,
    fingerprint: str,
    resources: Any,
    retries_and_verbosity: tuple[int, int],
) -> str:
    config = TrainConfig.from_trial(flat_config)
    computed = {k: v for k, v in config.to_dict().items() if k not in RUNTIME_KEYS}
    runs = f"{str(storage).rstrip('/')}/{PREREQUISITES_DIR}"
    folder = f"{runs}/{name}-{_digest(computed, fingerprint)}"
    # runtime keys (loader workers, device, ...) do not change what the run computes; folders
    # of earlier versions were named after the whole configuration
    earlier = f"{runs}/{name}-{_digest(config.to_dict(), fingerprint)}"
    for found in (folder, earlier):
        text = read_file(f"{found}/{_RECORD}")
        record = json.loads(text) if text else None
        if record and file_exists(record["checkpoint"]):
            print(f"prerequisite {name}: reusing {record['checkpoint']}", flush=True)
            return str(record["checkpoint"])
    print(f"prerequisite {name}: training {folder.rsplit('/', 1)[1]}", flush=True)
    checkpoint = _train_prerequisite(config, index, folder, resources, *retries_and_verbosity)
    record = {
        "name": name,
        "config": config.to_dict(),
        "dataset": fingerprint,
        "checkpoint": checkpoint,
    }
    write_file(f"{folder}/{_RECORD}", json.dumps(record, indent=2).encode())
    return checkpoint


def _digest(config: dict[str, Any], fingerprint: str) -> str:
    text = json.dumps({"config": config, "data": fingerprint}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _train_prerequisite(
    config: TrainConfig,
    index: DatasetIndex,
    folder: str,
    resources: Any,
    max_failures: int,
    verbose: int,
) -> str:
    """Train one prerequisite run as a one-trial Tuner with the space's per-trial resources, in
    ``folder`` (a path or a bucket URI)."""
    from ray import tune

    store = f"{folder}/{CHECKPOINTS_DIR}"
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, index=index, store=store), resources
    )
    run_dir = f"{folder}/run"
    name = folder.rsplit("/", 1)[1]
    if tune.Tuner.can_restore(run_dir):
        select_classic_console()  # the restored reporter prints only on Tune's classic console
        tuner = tune.Tuner.restore(run_dir, trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=with_recipe_modules(config.to_flat()),
            run_config=tune.RunConfig(
                name="run",
                storage_path=folder,
                failure_config=tune.FailureConfig(max_failures=max_failures),
                checkpoint_config=checkpoint_config(),
                verbose=verbose,
                progress_reporter=build_progress_reporter(None),
            ),
        )
    with graceful_interrupt() as interrupt:
        result = tuner.fit()[0]
    if interrupt.seen:  # nothing to resume by name yet: the same command reuses the run
        raise KeyboardInterrupt
    if result.error is not None:
        raise EgotuneError(f"prerequisite run {name} failed: {result.error}")
    pointer = checkpoint_pointer(result.checkpoint) if result.checkpoint is not None else None
    if pointer is None or not pointer.get("final_best"):
        raise EgotuneError(f"prerequisite run {name} left no best weights")
    # The engine's own best (the first epoch reaching the best accuracy, as the report selects),
    # complete with its frozen weights, written by the trial at its end.
    trial_id = str((result.metrics or {}).get("trial_id"))
    best = f"{store}/{trial_id}/{pointer['final_best']}"
    if not file_exists(best):
        raise EgotuneError(f"prerequisite run {name}: {best} is missing")
    return best
