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

The trainable applies the new values exactly: :meth:`tuner.training.engine.Trainer.continue_from`
keeps the donor's weights, optimiser moments, RNG and data order and takes the recipient's learning
rate, weight decay and schedule."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.schedulers.pb2 import PB2

from tuner.atomic import write_atomic
from tuner.results import EXPLOIT_ID, EXPLOITS_FILE, read_exploits
from tuner.spaces import Algorithm, Distribution, SearchSpace
from tuner.training.checkpoints.writer import (
    CHECKPOINTS_DIR,
    checkpoint_pointer,
    pin_donor_files,
)
from tuner.training.config import TrainConfig
from tuner.tune.params import POPULATION_KEY

__all__ = [
    "ExactPB2",
    "ExactPBT",
    "build_population_scheduler",
]


def build_population_scheduler(
    space: SearchSpace, experiment_dir: str | Path, store: str | Path | None = None
) -> Any:
    """Ray's PBT or PB2 with egotune's exploits, on the reported ``epoch``, synchronous;
    ``store``: the trials' checkpoint store, a folder or a bucket URI (default: the experiment
    folder's ``checkpoints``)."""
    settings = space.scheduler
    assert settings.mutations is not None
    if settings.seed is not None:
        random.seed(settings.seed)  # Ray's PBT draws donors and mutations from `random`
    common: dict[str, Any] = {
        "time_attr": "epoch",
        "metric": settings.metric,
        "mode": settings.mode,
        "perturbation_interval": settings.perturbation_interval,
        "quantile_fraction": settings.quantile_fraction,
        "synch": True,
        "log_config": False,
        "experiment_dir": str(experiment_dir),
        "store": str(store or Path(experiment_dir) / CHECKPOINTS_DIR),
    }
    if settings.algorithm == Algorithm.PB2:
        bounds = {key: [d.low, d.high] for key, d in settings.mutations.items()}
        return ExactPB2(hyperparam_bounds=bounds, **common)
    mutations = {key: _domain(d) for key, d in settings.mutations.items()}
    return ExactPBT(
        hyperparam_mutations=mutations,
        resample_probability=settings.resample_probability,
        **common,
    )


def _domain(distribution: Distribution) -> Any:
    from ray import tune

    if distribution.kind == "choice":
        return list(distribution.choices)
    low, high = float(distribution.low or 0), float(distribution.high or 0)
    if distribution.kind == "loguniform":
        return tune.loguniform(low, high)
    if distribution.kind == "randint":
        return tune.randint(int(low), int(high) + 1)
    return tune.uniform(low, high)


class _ExactExploits:
    """Mixin in front of Ray's PBT/PB2: exploits only from states on disk, pinned, recorded."""

    _trial_state: dict[Any, Any]
    _next_perturbation_sync: float
    _perturbation_interval: float
    _time_attr: str
    _metric: Any
    _metric_op: Any
    _synch: bool

    def __init__(
        self, *args: Any, experiment_dir: str, store: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._experiment_dir = Path(experiment_dir)
        self._store = store or str(self._experiment_dir / CHECKPOINTS_DIR)
        """The trials' checkpoint store: a folder, or a bucket URI."""

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        """Ray's PBT starts every added trial's bookkeeping at time 0, and Tune adds a trial
        again when it retries it after a failure and when ``--resume`` restores it: the trial
        would then perturb off the population's schedule (a resumed search at epoch 3 instead of
        4) and count as behind the barrier. Its last reported result says where it is."""
        super().on_trial_add(tune_controller, trial)  # type: ignore[misc]
        result = trial.run_metadata.last_result or {}  # not `last_result`: it may ask the actor
        reached = result.get(self._time_attr)
        if not isinstance(reached, int | float) or reached <= 0:
            return
        interval = self._perturbation_interval
        state = self._trial_state[trial]
        state.last_train_time = reached
        state.last_perturbation_time = (reached // interval) * interval
        state.last_result = result
        if self._metric in result:
            state.last_score = self._metric_op * result[self._metric]
        state.last_checkpoint = trial.checkpoint
        if self._synch:
            self._next_perturbation_sync = max(
                self._next_perturbation_sync, state.last_perturbation_time + interval
            )

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        """Ray's synchronous barrier waits for every trial of ``get_live_trials()``, and Tune
        keeps a trial it gave up on (ERROR) there: the population would wait for it for ever
        (each later point needing a release). The barrier sees the running population only."""
        return super().on_trial_result(  # type: ignore[misc]
            _RunningPopulation(tune_controller), trial, result
        )

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        chosen = super().choose_trial_to_run(tune_controller)  # type: ignore[misc]
        if chosen is None and self._release_barrier(tune_controller):
            chosen = super().choose_trial_to_run(tune_controller)  # type: ignore[misc]
        return chosen

    def _release_barrier(self, tune_controller: Any) -> bool:
        """Synchronous PBT pauses each trial at a perturbation point until every live trial
        reaches it, and checks again only when a result arrives. A trial that ends short of
        the point instead (Tune gave up on it after its retries) would leave the others paused
        for ever: when every live trial is paused at the point, let them continue (the next
        point perturbs as usual). Returns whether it did."""
        from ray.tune.experiment import Trial

        # Tune's "live" trials include the ones it gave up on (ERROR), and so does its barrier
        live = [
            t
            for t in tune_controller.get_live_trials()
            if t.status not in (Trial.ERROR, Trial.TERMINATED)
        ]
        if not live or any(t.status != Trial.PAUSED for t in live):
            return False
        sync = self._next_perturbation_sync
        reached = [self._trial_state[t].last_train_time for t in live]
        if min(reached) < sync:
            return False
        for trial in live:  # perturbed there as far as the clock goes: next stop one interval on
            self._trial_state[trial].last_perturbation_time = sync
        self._next_perturbation_sync = max(sync, max(reached)) + self._perturbation_interval
        print(f"pbt: a trial ended short of epoch {sync}; the trials waiting there continue")
        return True

    def _exploit(self, tune_controller: Any, trial: Any, trial_to_clone: Any) -> None:
        if _at_its_end(self._trial_state[trial].last_result, trial.config):
            return  # the trial has run all its epochs: nothing would continue from the state
        checkpoint = self._trial_state[trial_to_clone].last_checkpoint
        pointer = checkpoint_pointer(checkpoint) if checkpoint is not None else None
        if pointer is None or not pin_donor_files(
            self._store, trial.trial_id, trial_to_clone.trial_id, pointer
        ):
            print(
                f"pbt: trial {trial.trial_id} keeps its own state: trial "
                f"{trial_to_clone.trial_id} has no checkpoint on disk to continue from",
                flush=True,
            )
            return
        old = dict(trial.config)
        super()._exploit(tune_controller, trial, trial_to_clone)  # type: ignore[misc]
        population = dict(old.get(POPULATION_KEY) or {})
        population["generation"] = int(population.get("generation", 0)) + 1
        population["exploit"] = uuid.uuid4().hex[:12]  # the trial reports it with its epochs
        trial.set_config({**trial.config, POPULATION_KEY: population})
        self._record(trial, trial_to_clone, int(pointer["epoch"]), old, population)

    def _record(
        self,
        trial: Any,
        donor: Any,
        epoch: int,
        old: dict[str, Any],
        population: dict[str, Any],
    ) -> None:
        row: dict[str, Any] = {
            "trial_id": trial.trial_id,
            "donor_id": donor.trial_id,
            "epoch": epoch,
            "generation": population["generation"],
            EXPLOIT_ID: population["exploit"],
            "time": time.time(),
        }
        for key in population.get("keys", ()):
            row[f"old.{key}"] = old.get(key)
            row[f"new.{key}"] = trial.config.get(key)
        path = self._experiment_dir / EXPLOITS_FILE
        recorded = read_exploits(self._experiment_dir)
        table = pd.DataFrame([*recorded.to_dict("records"), row])
        write_atomic(path, lambda handle: table.to_parquet(handle, index=False))
        changes = ", ".join(
            f"{key} {_short(old.get(key))} -> {_short(trial.config.get(key))}"
            for key in population.get("keys", ())
        )
        print(
            f"pbt: trial {trial.trial_id} continues from trial {donor.trial_id} after epoch "
            f"{epoch} ({changes})",
            flush=True,
        )


def _at_its_end(result: dict[str, Any] | None, config: dict[str, Any]) -> bool:
    if not result or "epoch" not in result:
        return False
    return int(result["epoch"]) >= TrainConfig.from_trial(config).total_epochs


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class _RunningPopulation:
    """A view of Tune's controller whose live trials leave out the ended ones."""

    def __init__(self, controller: Any) -> None:
        self._controller = controller

    def get_live_trials(self) -> list[Any]:
        from ray.tune.experiment import Trial

        ended = (Trial.ERROR, Trial.TERMINATED)
        return [t for t in self._controller.get_live_trials() if t.status not in ended]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._controller, name)


class ExactPBT(_ExactExploits, PopulationBasedTraining):
    """Ray's PBT with egotune's exploits (see the module docstring)."""


class ExactPB2(_ExactExploits, PB2):
    """Ray's PB2 with egotune's exploits (see the module docstring)."""
