"""Replay a finished experiment's learning curves as a new search, at no training cost.

A replayed trial is one configuration of a finished experiment: the Ray Tune function trainable
:func:`replay_trial` reports that trial's recorded metric from ``epochs.parquet``, epoch by epoch,
so a scheduler sees exactly the curve the real trial produced and ASHA can stop it at a rung, as it
would have stopped the real one. Running grid, random, ASHA or Optuna over these trials answers
"what would this scheduler have spent on my finished grid, and would it have found the best
configuration?" in seconds, with the same searcher and scheduler objects ``egotune search`` builds
(:func:`tuner.tune.schedulers.build_tune_config`).

What the searcher chooses among (see docs/replay.md):

- when the recorded configurations are a full factorial product of their varying hyperparameters
  (any grid without ``points``, e.g. Fig. 10), each hyperparameter is its own categorical over its
  recorded values, so random search draws the grid's product distribution and Optuna's TPE learns
  per-parameter densities (``lr`` matters, ``gamma`` barely) as in a real search;
- otherwise (``points`` rows, sampled continuous values, incomplete grids) one categorical over the
  recorded trial ids, the only space in which every draw has a recorded curve.

Grid and ASHA replays visit every recorded trial once, as ``egotune search --scheduler asha`` runs
a grid space (every cell once, ASHA stopping the weak ones), in an order drawn from the seed: the
order of a grid is arbitrary, so averaging over orders gives the expected cost to reach a target.
Random and Optuna searches draw ``num_samples`` configurations (as many as were recorded, by
default), with repeats as a real search over the same categories would.

Each trial pauses ``time_scale`` times its recorded epoch time before each report, so concurrent
replayed trials advance at their recorded relative speeds and results reach the scheduler
interleaved as in the real search.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from tuner.errors import EgotuneError, UsageError
from tuner.spaces import ASHA_REDUCTION_FACTOR, REPLAYABLE, Algorithm, asha_grace_period

if TYPE_CHECKING:
    import pandas as pd
    from ray.tune.experiment import Trial

__all__ = [
    "TRIAL_KEY",
    "RecordedCurves",
    "ReplayOutcome",
    "ReplaySettings",
    "epochs_to_target",
    "load_recorded",
    "replay_search",
    "replay_trial",
    "stitch_fidelities",
    "summarize_trace",
]

TRIAL_KEY = "recorded_trial"
"""Config key (and reported metric) naming the recorded trial a replayed trial replays."""
_EVERY_TRIAL_ONCE = ("grid", "asha")  # what `egotune search --scheduler asha` does on a grid
_DEFAULT_METRIC, _DEFAULT_MODE = "val_acc", "max"


# -- recorded curves --------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedCurves:
    """The per-epoch curves of a finished experiment and the configurations that produced them."""

    experiment: str
    """Experiment name (its folder name)."""
    metric: str
    """The metric the search optimised (the recorded space's ``scheduler.metric``)."""
    mode: str
    """``max`` or ``min``."""
    curves: dict[str, tuple[tuple[int, float, float], ...]]
    """Per trial id: ``(epoch, metric, seconds)`` for each recorded epoch, in epoch order."""
    keys: tuple[str, ...] = ()
    """Hyperparameters that vary between the recorded trials."""
    configs: dict[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    """Per trial id: its values of :attr:`keys` (lists as JSON text)."""
    units: dict[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict, repr=False)
    """Per trial id, one per curve row: what computed that epoch, ``(fidelity, computing
    configuration, epoch)``; trials whose rows share a unit shared that epoch (prefix sharing
    computed it once). Empty when the experiment does not say (``computed_by``)."""
    fidelities: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict, repr=False)
    """Per trial id, one per curve row: the recorded experiment the row comes from (a
    fidelity-schedule replay stitches two, :func:`stitch_fidelities`)."""

    @property
    def trial_ids(self) -> list[str]:
        return list(self.curves)

    @property
    def total_epochs(self) -> int:
        """Epochs the whole recorded search trained: the grid's cost."""
        return sum(len(curve) for curve in self.curves.values())

    @property
    def max_epoch(self) -> int:
        """Last epoch of the longest recorded trial (ASHA's ``max_t``)."""
        return max(row[0] for curve in self.curves.values() for row in curve)

    @property
    def best(self) -> float:
        """Best metric value of any epoch of any recorded trial."""
        values = [row[1] for curve in self.curves.values() for row in curve]
        return max(values) if self.mode == "max" else min(values)

    def target(self, tolerance: float) -> float:
        """The value a search must reach to count as within ``tolerance`` of :attr:`best`."""
        return self.best - tolerance if self.mode == "max" else self.best + tolerance

    @property
    def factorial(self) -> bool:
        """Whether the configurations are exactly the product of the recorded key values."""
        if not self.keys or len(set(self.configs.values())) != len(self.curves):
            return False
        if any(_is_missing(v) for config in self.configs.values() for v in config):
            return False
        return math.prod(len(values) for values in self.choices().values()) == len(self.curves)

    def choices(self) -> dict[str, list[Any]]:
        """Recorded values of each key, in first-seen order."""
        values: dict[str, list[Any]] = {key: [] for key in self.keys}
        for config in self.configs.values():
            for key, value in zip(self.keys, config, strict=True):
                if value not in values[key]:
                    values[key].append(value)
        return values

    def trial_for(self, config: Mapping[str, Any]) -> str:
        """The recorded trial a replayed trial with ``config`` replays."""
        if TRIAL_KEY in config:
            return str(config[TRIAL_KEY])
        wanted = tuple(config[key] for key in self.keys)
        for trial_id, values in self.configs.items():
            if values == wanted:
                return trial_id
        raise KeyError(f"no recorded trial has {dict(zip(self.keys, wanted, strict=True))}")


def load_recorded(
    exp: str | os.PathLike[str], storage: str | os.PathLike[str] | None = None
) -> RecordedCurves:
    """Read experiment ``exp`` (a name under ``storage`` or a folder) for replays.

    Raises :class:`EgotuneError` with one line when the experiment does not exist or recorded no
    epoch with its metric.
    """
    from tuner.results import read_epochs, read_trials, resolve_experiment

    path = resolve_experiment(exp, storage)
    metric, mode = _recorded_objective(path)
    epochs = read_epochs(path)
    if metric not in epochs.columns or epochs[metric].notna().sum() == 0:
        raise EgotuneError(
            f"experiment {path.name!r}: {path / 'epochs.parquet'} has no epochs with {metric}; "
            "a replay needs a search that reported at least one epoch"
        )
    epochs = epochs.dropna(subset=[metric])
    curves = {
        str(trial_id): tuple(
            (int(row.epoch), float(row.value), _seconds(row.seconds))
            for row in rows.assign(value=rows[metric]).itertuples()
        )
        for trial_id, rows in epochs.groupby("trial_id", sort=True)
    }
    keys, configs = _configurations(read_trials(path), list(curves))
    units: dict[str, tuple[Any, ...]] = {}
    if "computed_by" in epochs.columns:
        for trial_id, rows in epochs.groupby("trial_id", sort=True):
            units[str(trial_id)] = tuple(
                (path.name, configs.get(str(by), str(by)) if by else configs.get(str(trial_id)), e)
                for by, e in zip(rows["computed_by"], rows["epoch"], strict=True)
            )
    fidelities = {t: (path.name,) * len(curve) for t, curve in curves.items()}
    return RecordedCurves(path.name, metric, mode, curves, keys, configs, units, fidelities)


def stitch_fidelities(low: RecordedCurves, high: RecordedCurves, switch: int) -> RecordedCurves:
    """The curves a fidelity schedule would report on two recordings of the same grid: each
    configuration's ``low``-fidelity epochs up to ``switch``, its ``high``-fidelity ones after.

    A model of the promotion, not a recording of one: a promoted trial continues from its
    low-fidelity state, whose accuracy after the switch the recordings do not hold; the stitch
    takes the full-size run's epochs there. Trial ids, configurations and the units after the
    switch are ``high``'s. Raises :class:`EgotuneError` when the grids differ.
    """
    if low.keys != high.keys or set(low.configs.values()) != set(high.configs.values()):
        raise EgotuneError(
            f"{low.experiment} and {high.experiment} are not the same grid "
            f"(keys {list(low.keys)} / {list(high.keys)})"
        )
    by_config = {config: trial_id for trial_id, config in low.configs.items()}
    curves, units, fidelities = {}, {}, {}
    for trial_id, config in high.configs.items():
        cheap = low.curves[by_config[config]]
        full = high.curves[trial_id]
        take = [i for i, row in enumerate(cheap) if row[0] <= switch]
        rest = [i for i, row in enumerate(full) if row[0] > switch]
        curves[trial_id] = tuple(cheap[i] for i in take) + tuple(full[i] for i in rest)
        low_units = low.units.get(by_config[config]) or ()
        high_units = high.units.get(trial_id) or ()
        if low_units and high_units:
            units[trial_id] = tuple(low_units[i] for i in take) + tuple(high_units[i] for i in rest)
        fidelities[trial_id] = (low.experiment,) * len(take) + (high.experiment,) * len(rest)
    return dataclasses.replace(
        high,
        experiment=f"{low.experiment} until epoch {switch}, then {high.experiment}",
        curves=curves,
        units=units,
        fidelities=fidelities,
    )


def _recorded_objective(path: Path) -> tuple[str, str]:
    """Metric and mode of the recorded space (the defaults when the folder does not say)."""
    import yaml

    from tuner.results import read_experiment_metadata

    try:
        text = read_experiment_metadata(path)["space"]["text"]
        settings = (yaml.safe_load(text) or {}).get("scheduler") or {}
    except (FileNotFoundError, KeyError, TypeError, AttributeError, yaml.YAMLError):
        settings = {}
    return str(settings.get("metric", _DEFAULT_METRIC)), str(settings.get("mode", _DEFAULT_MODE))


def _configurations(
    trials: pd.DataFrame, trial_ids: Sequence[str]
) -> tuple[tuple[str, ...], dict[str, tuple[Any, ...]]]:
    from tuner.results import varying_columns

    trials = trials[trials["trial_id"].isin(trial_ids)]
    if len(trials) != len(trial_ids):
        return (), {}  # epochs without a trials row: replay by trial id
    keys = tuple(varying_columns(trials))
    configs = {
        str(row["trial_id"]): tuple(_plain(row[key]) for key in keys)
        for _, row in trials.iterrows()
    }
    return keys, {trial_id: configs[trial_id] for trial_id in trial_ids}


def _plain(value: Any) -> Any:
    """A hashable plain-python value: numpy values unwrapped, lists as JSON text."""
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        value = value.tolist()
    return json.dumps(list(value)) if isinstance(value, list | tuple) else value


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _seconds(value: Any) -> float:
    return float(value) if value is not None and math.isfinite(value) else 0.0


# -- the trainable ----------------------------------------------------------------------------


def replay_trial(config: dict[str, Any], *, curves: RecordedCurves, time_scale: float) -> None:
    """Report the recorded curve of the trial ``config`` selects, one epoch at a time.

    ``curves`` arrives through ``tune.with_parameters``. Each report carries ``epoch`` (ASHA's
    time attribute), the metric and :data:`TRIAL_KEY`.
    """
    from ray import tune

    trial_id = curves.trial_for(config)
    for epoch, value, seconds in curves.curves[trial_id]:
        time.sleep(seconds * time_scale)
        tune.report({"epoch": epoch, curves.metric: value, TRIAL_KEY: trial_id})


# -- outcomes ---------------------------------------------------------------------------------


def epochs_to_target(values: Sequence[float], target: float, mode: str = "max") -> int | None:
    """Epochs consumed until the first value that reaches ``target`` (1-based), or ``None``.

    ``values`` are the metric of every epoch the search trained, in the order it received them.
    """
    for count, value in enumerate(values, start=1):
        if (value >= target) if mode == "max" else (value <= target):
            return count
    return None


@dataclass(frozen=True)
class ReplayOutcome:
    """What one replayed search spent and found."""

    algorithm: str
    seed: int
    trials: int
    """Trials the search started."""
    epochs: int
    """Epochs it consumed in total."""
    epochs_to_target: int | None
    """Epochs consumed until one reached the target (``None``: never reached)."""
    best: float
    """Best metric value it saw."""
    grid_epochs: int
    """Epochs of the recorded search (the denominator of the fractions)."""
    reported: tuple[tuple[str, int, float], ...] = dataclasses.field(default=(), repr=False)
    """``(recorded trial, epoch, value)`` of every epoch the search received, in order."""

    @property
    def fraction_to_target(self) -> float | None:
        if self.epochs_to_target is None:
            return None
        return self.epochs_to_target / self.grid_epochs

    @property
    def fraction_consumed(self) -> float:
        return self.epochs / self.grid_epochs

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values.pop("reported")
        return {
            **values,
            "fraction_to_target": self.fraction_to_target,
            "fraction_consumed": self.fraction_consumed,
        }


def summarize_trace(
    values: Sequence[float],
    *,
    trials: int,
    target: float,
    mode: str,
    grid_epochs: int,
    algorithm: str,
    seed: int,
    reported: Sequence[tuple[str, int, float]] = (),
) -> ReplayOutcome:
    """The outcome of a search that received ``values`` (one per epoch, in arrival order)."""
    best = max(values) if mode == "max" else min(values)
    return ReplayOutcome(
        algorithm=algorithm,
        seed=seed,
        trials=trials,
        epochs=len(values),
        epochs_to_target=epochs_to_target(values, target, mode),
        best=best,
        grid_epochs=grid_epochs,
        reported=tuple(reported),
    )


# -- running a replay -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplaySettings:
    """How one replayed search runs."""

    algorithm: str
    """One of :data:`tuner.spaces.REPLAYABLE`."""
    seed: int = 0
    """Seed of the searcher (random, Optuna) or of the order of the trials (grid, ASHA)."""
    num_samples: int | None = None
    """Trials of random and Optuna searches; ``None``: as many as were recorded."""
    grace_period: int | None = None
    """ASHA: ``None`` takes ``egotune search``'s default, a tenth of the longest trial."""
    reduction_factor: float | None = None
    """ASHA: ``None`` takes ``egotune search``'s default, 3."""
    max_concurrent: int = 4
    """Replayed trials running at once."""
    tolerance: float = 1.0
    """How close to the recorded best counts as found (points of the metric)."""
    time_scale: float = 0.005
    """Pause before each report, as a fraction of the epoch's recorded time."""
    rungs: tuple[int, ...] | None = None
    """ASHA: rungs at these epochs instead of the grace period's (a fidelity schedule's)."""

    def __post_init__(self) -> None:
        if self.algorithm not in REPLAYABLE:
            raise UsageError(f"--scheduler {self.algorithm}: choose one of {', '.join(REPLAYABLE)}")
        for name, value in (("max-concurrent", self.max_concurrent), ("seed", self.seed)):
            if value < (1 if name == "max-concurrent" else 0):
                raise UsageError(f"--{name} {value}: out of range")
        if self.reduction_factor is not None and self.reduction_factor <= 1:
            raise UsageError(f"--reduction-factor {self.reduction_factor:g}: must be above 1")
        if self.rungs is not None and (self.grace_period is not None or not self.rungs):
            raise UsageError("--rungs: not with --grace-period")
        if self.grace_period is not None and self.grace_period < 1:
            raise UsageError(f"--grace-period {self.grace_period}: must be 1 or more")


def replay_search(curves: RecordedCurves, settings: ReplaySettings) -> ReplayOutcome:
    """Run one replayed search on Ray Tune (a local Ray unless one is connected)."""
    import ray
    from ray import tune

    from tuner.tune.schedulers import build_tune_config

    if settings.grace_period is not None and settings.grace_period > curves.max_epoch:
        raise UsageError(
            f"--grace-period {settings.grace_period}: above the longest recorded trial "
            f"({curves.max_epoch} epochs)"
        )
    if not ray.is_initialized():
        # A local Ray that keeps its workers' output to itself: the report is the output.
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    trace = _MetricTrace(curves.metric)
    space = _scheduler_space(curves, settings)
    trainable = tune.with_resources(
        tune.with_parameters(replay_trial, curves=curves, time_scale=settings.time_scale),
        {"cpu": 0.01},  # the scheduler's concurrency limit decides how many run at once
    )
    with tempfile.TemporaryDirectory(prefix="egotune-replay-") as folder, _quiet_tune():
        tune_config = dataclasses.replace(
            build_tune_config(space, folder),
            reuse_actors=True,
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        )
        tuner = tune.Tuner(
            trainable,
            param_space=_param_space(curves, settings),
            tune_config=tune_config,
            run_config=tune.RunConfig(
                name="replay", storage_path=folder, callbacks=[trace], verbose=0
            ),
        )
        results = tuner.fit()
    return summarize_trace(
        trace.values,
        trials=len(results),
        target=curves.target(settings.tolerance),
        mode=curves.mode,
        grid_epochs=curves.total_epochs,
        algorithm=settings.algorithm,
        seed=settings.seed,
        reported=trace.rows,
    )


def _scheduler_space(curves: RecordedCurves, settings: ReplaySettings) -> Any:
    """A search space holding only the scheduler block, for ``build_tune_config``."""
    from tuner.spaces import Resources, SchedulerSettings, SearchSpace
    from tuner.training.fidelity import FidelitySchedule, Rung

    algorithm = Algorithm(settings.algorithm)
    asha = algorithm.uses_asha
    max_t = curves.max_epoch
    scheduler = SchedulerSettings(
        algorithm=settings.algorithm,
        metric=curves.metric,
        mode=curves.mode,
        num_samples=1 if settings.algorithm in _EVERY_TRIAL_ONCE else _samples(curves, settings),
        max_concurrent=settings.max_concurrent,
        seed=settings.seed if algorithm.samples else None,
        grace_period=(
            (settings.rungs[0] if settings.rungs else settings.grace_period)
            or asha_grace_period(max_t)
        )
        if asha
        else None,
        reduction_factor=(settings.reduction_factor or ASHA_REDUCTION_FACTOR) if asha else None,
        max_t=max_t if asha else None,
        rungs=FidelitySchedule(tuple(Rung(e) for e in settings.rungs))
        if asha and settings.rungs
        else None,
    )
    name = f"replay-{curves.experiment}"
    return SearchSpace(
        name=name,
        source=f"replay of {curves.experiment}",
        report=None,
        description=None,
        reference=None,
        fixed={},
        grid={},
        points=[],
        sample={},
        repeats=None,
        scheduler=scheduler,
        resources=Resources(cpus=0.01, gpus=0.0),
        prerequisites={},
        document={},
    )


def _samples(curves: RecordedCurves, settings: ReplaySettings) -> int:
    return settings.num_samples or len(curves.curves)


def _param_space(curves: RecordedCurves, settings: ReplaySettings) -> dict[str, Any]:
    from ray import tune

    if settings.algorithm in _EVERY_TRIAL_ONCE:
        order = curves.trial_ids
        random.Random(settings.seed).shuffle(order)
        return {TRIAL_KEY: tune.grid_search(order)}
    if curves.factorial:
        return {key: tune.choice(values) for key, values in curves.choices().items()}
    return {TRIAL_KEY: tune.choice(curves.trial_ids)}


def _trial_name(trial: Any) -> str:
    return str(trial.trial_id)  # short names: Tune's default lists every config value


class _MetricTrace(Callback):
    """The metric of every reported epoch, in the order the driver receives them."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.values: list[float] = []
        self.rows: list[tuple[str, int, float]] = []

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        value = float(result[self.metric])
        self.values.append(value)
        self.rows.append((str(result[TRIAL_KEY]), int(result["epoch"]), value))


@contextlib.contextmanager
def _quiet_tune() -> Iterator[None]:
    """No per-trial CSV/JSON/TensorBoard logs (a replay reads nothing back from them), and none
    of Tune's console output: its banner prints even when silenced, and the result grid warns
    about the logs it cannot find."""
    name = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"
    previous = os.environ.get(name)
    os.environ[name] = "1"
    analysis_log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = analysis_log.level
    analysis_log.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            yield
    finally:
        analysis_log.setLevel(level)
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
