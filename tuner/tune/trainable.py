"""The Ray Tune function trainable: the engine, one report per epoch, periodic checkpoints.

``epoch`` in every report is the engine's global epoch restored from the checkpoint, which is what
ASHA keys on: Ray does not restore scheduler state (Ray #30838) and restarts
``training_iteration`` after a restore, so a checkpoint-derived counter keeps rung decisions
consistent after trial retries and resumed searches.

Checkpoints follow :mod:`tuner.training.checkpoints.writer`: the trial's files live in
``<experiment>/checkpoints/<trial_id>/`` (resume states every ``checkpoint_every`` epochs and at
stage and trial ends, best weights when they changed, ``best.pt`` complete at the end), written
off the training thread. Ray Tune receives, with the first report after a write completed, a
checkpoint holding only ``pointer.json``, which names those files: Tune persists it in
milliseconds, keeps every one (no forced experiment snapshots) and restores a retried or resumed
trial from the newest one it registered. A trial restored from a pointer whose state file is gone
(pruned, or an interrupted write) starts again from its first epoch, which replays the same
metrics, and says so.

Searches that reuse checkpoints: in a grid with prefix sharing (:func:`tuner.spaces.plan_sharing`)
the trial's ``sharing.json`` (written by the searcher) names the epochs after which it saves a
branch state and the branch states it may start from; a branch reports the shared epochs as they
were computed (``computed_by``) and trains the rest. In a population search (``_population`` in the
config) the trial checkpoints synchronously every perturbation interval, and a restore from another
trial's pointer is an exploit: the donor's state with this trial's new hyperparameters
(:meth:`tuner.training.engine.Trainer.continue_from`).

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
from tuner.results import COMPUTED_BY, EXPLOIT_ID, GENERATION, PREDICTIONS_KEY
from tuner.storage import is_uri, local_file
from tuner.training.checkpoints.files import load_checkpoint
from tuner.training.checkpoints.policy import CheckpointPolicy
from tuner.training.checkpoints.writer import (
    CHECKPOINTS_DIR,
    PINNED_PREFIX,
    POINTER_FILE,
    CheckpointFolder,
    RunCheckpoints,
    SavedCheckpoint,
    read_pointer,
    resume_run,
)
from tuner.training.config import TrainConfig
from tuner.training.engine import EpochRecord, Trainer
from tuner.training.fidelity import FIDELITY_KEY, FidelitySchedule
from tuner.tune.params import CONFIG_FLOPS, POPULATION_KEY, resolve_trial_config
from tuner.tune.sharing.trial import ENDED_FILE, SHARING_FILE, TrialSharing

__all__ = [
    "ACTOR_NAME_PREFIX",
    "CHECKPOINTS_DIR",
    "CONFIG_FLOPS",
    "LEGACY_STATE_FILE",
    "METRIC_NAMES",
    "POINTER_FILE",
    "checkpoint_config",
    "read_pointer",
    "train_trial",
]

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


REUSE_WAIT_S = 60
"""Seconds a reused worker waits for the previous trial's thread to end (Tune's default: 2)."""


class TrialActorName:
    """Mixin Tune puts in front of the function trainable's actor class (``__mixins__``).

    Tune's wrapper class reports its ``_name`` as the actor's repr, which the dashboard and
    ``ray list actors`` show next to each actor; by default every trial shows the function name.
    A reused actor takes the name of each new trial.

    Before reusing the worker for another trial, Tune waits ``TUNE_FUNCTION_THREAD_TIMEOUT_S``
    (2 s by default) for the previous trial's thread to end, and fails the new trial when it has
    not. On a busy node a trial stopped by ASHA was seen to take longer than that to end its
    thread (its ``finally`` hands off the checkpoint writer and releases the trial's memory), and
    the next trial failed. The worker waits up to :data:`REUSE_WAIT_S` instead, unless the
    variable is set.
    """

    _name: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", str(REUSE_WAIT_S))
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
    _collect_from_here()
    trial_id = context.get_trial_id()
    values = {  # a prerequisite's checkpoint in a bucket: downloaded to this node once
        key: local_file(value) if is_uri(value) else value
        for key, value in resolve_trial_config(config).items()
    }
    fidelity = FidelitySchedule.from_config(config.get(FIDELITY_KEY))
    trainer = Trainer(TrainConfig.from_trial(values), index, fidelity=fidelity)
    folder = CheckpointFolder.of(store, trial_id)
    checkpoints = RunCheckpoints(trainer, folder, CheckpointPolicy(trainer.config.checkpoint_every))
    sharing = TrialSharing.read(folder.fetch(SHARING_FILE).parent) or TrialSharing()
    restored = tune.get_checkpoint()
    shared_rows: list[dict[str, Any]] = []
    if restored is not None:
        with restored.as_directory() as pointer_dir:
            _restore(trainer, checkpoints, folder, Path(pointer_dir), config)
    elif sharing.sources:
        shared_rows = _branch(trainer, checkpoints, sharing)
    tags = {"experiment": context.get_experiment_name(), "trial": context.get_trial_name()}
    population = config.get(POPULATION_KEY) or {}
    run = _Run(trainer, checkpoints, trial_id, tags, save_at=set(sharing.save_at))
    run.exploit_every = int(population.get("interval") or 0)
    if population:
        run.lineage = {
            GENERATION: int(population.get("generation") or 0),
            EXPLOIT_ID: population.get("exploit"),
        }
    stopped = True
    try:
        run.replay(shared_rows)
        run.train(startup_s=_startup_s(entered))
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
        trainer.close()  # its loader processes
        checkpoints.close(wait=not stopped)
        del trainer, checkpoints, run
        _release(device)


class _Run:
    """The report loop of one trial: an epoch, its checkpoints, its report to Tune."""

    def __init__(
        self,
        trainer: Trainer,
        checkpoints: RunCheckpoints,
        trial_id: str,
        tags: dict[str, str],
        save_at: set[int],
    ) -> None:
        self.trainer = trainer
        self.checkpoints = checkpoints
        self.trial_id = trial_id
        self.tags = tags
        self.save_at = save_at
        self.exploit_every = 0
        """Population search: epochs between two states it may exploit (0: none)."""
        self.lineage: dict[str, Any] = {}
        """Population search: the number of exploits behind this run's config and the id of
        the last, reported with every epoch (what confirms an exploit the scheduler recorded,
        see ``tuner.results``)."""

    def replay(self, rows: list[dict[str, Any]]) -> None:
        """Report the epochs this trial shares with the trial it branched from, as that trial
        computed them (``computed_by`` names it); Tune and its scheduler see the full curve."""
        from ray import tune

        for row in rows:
            tune.report(dict(row))

    def train(self, startup_s: float) -> None:
        from ray import tune

        trainer, checkpoints = self.trainer, self.checkpoints
        report_s = 0.0
        extra: dict[str, Any] = {"startup_s": startup_s}
        for record in trainer.run():
            metrics = self.keep(record, {**extra, "report_s": report_s})
            # what the whole configuration costs (Optuna's second objective, scheduler.cost);
            # not kept in the run's history, which branches of other configurations replay
            metrics[CONFIG_FLOPS] = trainer.planned_flops
            _export_metrics(metrics, self.tags, trainer.device)
            metrics[PREDICTIONS_KEY] = record.predictions
            saved = checkpoints.completed
            start = time.perf_counter()
            if saved:
                with tempfile.TemporaryDirectory(prefix="egotune-pointer-") as pointer_dir:
                    _write_pointer(Path(pointer_dir), saved[-1], self.trial_id)
                    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(pointer_dir))
            else:
                tune.report(metrics)
            report_s = time.perf_counter() - start
            extra = {}

    def keep(self, record: EpochRecord, extra: dict[str, Any]) -> dict[str, Any]:
        """The row of the epoch just trained, with ``extra``: kept in the run's history first,
        so that every state written after this epoch (resume, branch) holds its row, then the
        checkpoints the epoch calls for. A branch that continues from a state replays its rows,
        this epoch's included."""
        trainer, checkpoints = self.trainer, self.checkpoints
        metrics = {**record.to_dict(), **extra, COMPUTED_BY: self.trial_id}
        metrics.update({k: v for k, v in self.lineage.items() if v is not None})
        metrics.update(checkpoint_s=0.0, checkpoint_bytes=0)
        checkpoints.history.append(metrics)
        stage_epochs = trainer.config.stage_settings(trainer.stage).epochs or 0
        blocked, size = checkpoints.after_epoch(
            record.train_s + record.data_wait_s + record.val_s,
            stage_end=trainer.stage_epoch >= stage_epochs,
            last=trainer.finished,
            now=bool(self.exploit_every) and record.epoch % self.exploit_every == 0,
        )
        if record.epoch in self.save_at:
            seconds, written = checkpoints.save_branch()
            blocked, size = blocked + seconds, size + written
        metrics.update(checkpoint_s=blocked, checkpoint_bytes=size)
        return dict(metrics)


def _branch(
    trainer: Trainer, checkpoints: RunCheckpoints, sharing: TrialSharing
) -> list[dict[str, Any]]:
    """Start from the first branch state of ``sharing.sources`` on disk; returns the rows of
    the epochs it holds. A source that ended before its branch epoch (ASHA stopped it) lends
    its newest resume state up to that epoch instead: those epochs are shared all the same.
    Without either, the trial computes its epochs from the first."""
    for source, epoch in sharing.sources:
        folder = checkpoints.folder.sibling(source)
        path = folder.fetch(folder.branch_path(epoch).name)
        if path.is_file():
            return _continue_branch(trainer, checkpoints, folder, path, source)
    for source, epoch in sharing.sources:
        folder = checkpoints.folder.sibling(source)
        earlier = _earlier_state(folder, epoch)
        if earlier is not None:
            return _continue_branch(trainer, checkpoints, folder, earlier, source)
    return []


def _earlier_state(folder: CheckpointFolder, epoch: int) -> Path | None:
    """The newest resume state of an ended trial's ``folder`` at or before ``epoch``."""
    if not folder.fetch(ENDED_FILE).is_file():
        return None  # still running: its older states may be rotated away under us
    return folder.newest_state(up_to=epoch)


def _continue_branch(
    trainer: Trainer,
    checkpoints: RunCheckpoints,
    folder: CheckpointFolder,
    path: Path,
    source: str,
) -> list[dict[str, Any]]:
    state = load_checkpoint(path)
    best_file = state.get("best_file")  # a resume state keeps its best weights apart
    best = load_checkpoint(folder.fetch(best_file))["model"] if best_file else None
    trainer.continue_from(state, best)
    checkpoints.history[:] = state.get("history", [])
    checkpoints.policy.taken(trainer.global_epoch, snapshot_s=0.0)
    print(f"trial continues after epoch {trainer.global_epoch} of trial {source}", flush=True)
    return list(checkpoints.history)


def _write_pointer(folder: Path, saved: SavedCheckpoint, trial_id: str) -> None:
    (folder / POINTER_FILE).write_text(json.dumps({**saved.pointer(), "trial": trial_id}))


def _restore(
    trainer: Trainer,
    checkpoints: RunCheckpoints,
    folder: CheckpointFolder,
    pointer_dir: Path,
    config: dict[str, Any],
) -> None:
    """Continue from the checkpoint Tune restores the trial from (a pointer, or a full state of
    an earlier version); from the first epoch when its state file is gone. A pointer of another
    trial is a population-based exploit: continue from that trial's state with this config."""
    if (pointer_dir / LEGACY_STATE_FILE).is_file():
        trainer.load_state_dict(load_checkpoint(pointer_dir / LEGACY_STATE_FILE))
        return
    pointer = read_pointer(pointer_dir)
    donor = pointer.get("trial") if pointer else None
    if pointer and donor and donor != folder.folder.name:
        _exploit(trainer, checkpoints, folder, pointer, config)
        return
    state_path = folder.fetch(pointer["state"]) if pointer else None
    if state_path is None or not state_path.is_file():
        print(f"trial restarts from epoch 1: its checkpoint {state_path} is gone", flush=True)
        return
    resume_run(trainer, checkpoints, state_path)
    print(f"trial continues after epoch {trainer.global_epoch} from its checkpoint", flush=True)


def _exploit(
    trainer: Trainer,
    checkpoints: RunCheckpoints,
    folder: CheckpointFolder,
    pointer: dict[str, Any],
    config: dict[str, Any],
) -> None:
    """Continue from trial ``pointer["trial"]``'s state (its files pinned in this trial's folder
    by the scheduler, else in its own) with this trial's explored hyperparameters."""
    donor = str(pointer["trial"])

    def donor_file(name: str) -> Path:
        pinned = folder.fetch(f"{PINNED_PREFIX}{donor}-{name}")
        return pinned if pinned.is_file() else donor_folder.fetch(name)

    donor_folder = folder.sibling(donor)

    state = load_checkpoint(donor_file(str(pointer["state"])))
    best = load_checkpoint(donor_file(str(pointer["best"])))["model"] if pointer["best"] else None
    keys = (config.get(POPULATION_KEY) or {}).get("keys", ())
    trainer.continue_from(state, best, differing=keys)
    checkpoints.history[:] = state.get("history", [])
    checkpoints.restore_best_file(None)  # written into this trial's folder at its next state
    checkpoints.policy.taken(trainer.global_epoch, snapshot_s=0.0)
    print(f"trial continues from trial {donor} after epoch {trainer.global_epoch}", flush=True)


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


def _collect_from_here() -> None:
    """Leave what the worker holds when a trial starts out of every later collection
    (``gc.freeze``), so that the one at the trial's end (:func:`_release`) scans only what the
    trial created. The worker's imports of torch, torchvision and Ray alone are about 440,000
    objects: 0.2 s per full collection on an idle core, 0.5 s measured in a trial on a busy one."""
    gc.freeze()


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
    # Ray's metric tags are ASCII: an experiment named in another script is escaped
    # (``résumé`` -> ``r\xe9sum\xe9``) rather than failing every report of the trial.
    tags = {key: value.encode("ascii", "backslashreplace").decode() for key, value in tags.items()}
    gauges = _gauges()
    gauges["egotune_val_acc"].set(float(metrics["val_acc"]), tags=tags)
    gauges["egotune_epoch"].set(float(metrics["epoch"]), tags=tags)
    gauges["egotune_clips_per_s"].set(float(metrics["clips_per_s"]), tags=tags)
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(device)
        gauges["egotune_gpu_memory_bytes"].set(float(memory), tags=tags)


def checkpoint_config() -> Any:
    """Keep every checkpoint Tune registers: each is a ``pointer.json`` of a few hundred bytes
    (the trial's own files are pruned by the trial), and a limit would make Tune force an
    experiment snapshot after every checkpoint to keep its view of the deleted ones consistent."""
    from ray import tune

    return tune.CheckpointConfig(num_to_keep=None)
