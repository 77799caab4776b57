"""Run a search space on Ray Tune: checks, prerequisites, the Tuner, streamed Parquet results.

``run_search`` does, in order:

1. pre-flight checks that fail in seconds with one line naming the flag: a writable storage with
   free space, an experiment folder that is new (or restorable with ``--resume``), the dataset
   (structure, every frame decodable, the users the trials split on), a reachable cluster, and a
   per-trial resource request that fits some node;
2. the space's prerequisite runs (e.g. the stage-1 model a stage-2 grid starts from), each
   executed once and reused by every trial and by later searches with the same configuration
   and dataset fingerprint (``<storage>/_prerequisites/``);
3. the Tuner (or ``Tuner.restore``), with a checkpoint per epoch, retries from the last
   checkpoint, and the Parquet callback writing ``trials.parquet`` and ``epochs.parquet``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from data_pipeline import (
    GTEA61_CLASSES,
    DatasetIndex,
    dataset_fingerprint,
    discover,
    split_by_user,
)
from tuner._atomic import write_json_atomic
from tuner._claim import LOCK_FILE, OWNER_FILE, ExperimentClaim, claim_new_experiment, describe
from tuner._dataset_checks import DATASET_CHECKS_DIR, verify_once
from tuner._interrupt import graceful_interrupt
from tuner._ray_session import connect, node_shapes
from tuner._tune_mapping import (
    build_param_space,
    build_progress_reporter,
    build_tune_config,
    resolve_trial_config,
    select_classic_console,
    trial_configs,
    trial_resources,
)
from tuner.config import RUNTIME_KEYS, TrainConfig, flatten_config
from tuner.errors import EgotuneError, UsageError
from tuner.preflight import (
    check_cluster_resources,
    check_local_resources,
    local_gpu_count,
    require_imagenet_weights,
    resource_requests,
    state_bytes,
)
from tuner.results import STORAGE_ENV, write_experiment_metadata
from tuner.sharing import SharingPlan, plan_sharing
from tuner.spaces import PrerequisiteRun, SearchSpace, nest_config
from tuner.trainable import CHECKPOINTS_DIR, read_pointer, train_trial

__all__ = [
    "DATASET_CHECKS_DIR",
    "DEFAULT_MAX_FAILURES",
    "PREREQUISITES_DIR",
    "STATES_OF_HEADROOM",
    "SearchOptions",
    "SearchOutcome",
    "run_search",
]

DEFAULT_MAX_FAILURES = 3
PREREQUISITES_DIR = "_prerequisites"

STATES_OF_HEADROOM = 2
"""Free space ``--storage`` must have when a search starts, in resume states of its largest
trial: the first state a trial keeps and the one it writes next."""
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


@dataclass
class SearchOptions:
    """Everything about a search that is not the space itself."""

    data: Path
    storage: Path
    name: str | None = None
    address: str | None = None
    resume: bool = False
    max_failures: int = DEFAULT_MAX_FAILURES
    resource_flags: Mapping[str, float] = field(default_factory=dict)
    """Per-trial resources given as flags (``{"gpus": 0.5}`` for ``--gpus-per-trial 0.5``), so
    that a request no node can give is named as the user gave it."""
    num_cpus: int | None = None
    """CPUs of a local Ray started here (``None``: all of this machine's)."""
    verbose: int = 1
    argv: Sequence[str] = field(default_factory=lambda: list(sys.argv))
    trainable: Callable[..., None] = train_trial
    """Function trainable of the trials, called as ``trainable(config, index=..., store=...)``
    (``store``: the experiment's checkpoint folder); benchmarks swap in one with fixed, known work
    to measure what the search machinery itself costs."""
    reuse_actors: bool = True
    """Let a trial's worker process run later trials (Tune's ``reuse_actors``) instead of
    starting a new process, with its ray and torch imports and CUDA context, for every trial. The
    trainable frees its GPU memory at the end of each trial and the actor takes the new trial's
    name; ``False`` gives every trial a fresh process."""


@dataclass
class SearchOutcome:
    """Where a finished search left its results."""

    name: str
    experiment_dir: Path
    dashboard_url: str | None
    num_trials: int
    num_errors: int
    interrupted: bool = False
    """Stopped by SIGINT (Ctrl-C): the trials stopped where they were and Tune saved the
    search's state, so ``egotune search --resume NAME`` continues it."""


def run_search(space: SearchSpace, options: SearchOptions) -> SearchOutcome:
    """Run (or resume) ``space`` on Ray Tune and return where its results are."""
    _refuse_uri_storage(options.storage)
    storage = _prepare_storage(options.storage)
    requests = resource_requests(space, options.resource_flags)
    if _starts_local_ray(options):  # what this machine cannot give, before Ray starts
        check_local_resources(requests, options.num_cpus or os.cpu_count() or 1, local_gpu_count())
    _check_free_space(storage, space)
    # egotune's tables hold every metric (and the per-video predictions); Tune's per-trial
    # result.json and progress.csv would copy them into every trial folder. Without them, the
    # result grid Tune builds at the end cannot read per-trial metrics and would say so.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    for warning in space.warnings:
        print(f"warning: {warning}", flush=True)
    claim = _claim_experiment(space, storage, options)
    try:
        outcome = _run_claimed(space, options, storage, requests, claim.folder)
    except BaseException:
        claim.release()
        _remove_if_unused(claim.folder, resumed=options.resume)
        raise
    claim.release()
    return outcome


def _claim_experiment(space: SearchSpace, storage: Path, options: SearchOptions) -> ExperimentClaim:
    """The experiment's folder, claimed for this search before anything else runs
    (:mod:`tuner._claim`)."""
    if not options.resume:
        name = options.name or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        return claim_new_experiment(storage, name, default=options.name is None)
    assert options.name is not None
    folder = storage / options.name
    _check_experiment_dir(folder, resume=True)
    claim = ExperimentClaim.take(folder)
    if claim.previous is not None:
        print(
            f"egotune: note: {options.name} was last run by {describe(claim.previous)}, which "
            "ended without releasing it (killed); this search takes it over",
            file=sys.stderr,
            flush=True,
        )
    return claim


def _remove_if_unused(folder: Path, *, resumed: bool) -> None:
    """A new experiment's folder that the failed search left with nothing but its claim."""
    if resumed or not folder.is_dir():
        return
    if {p.name for p in folder.iterdir()} <= {LOCK_FILE, OWNER_FILE}:
        shutil.rmtree(folder, ignore_errors=True)


def _run_claimed(
    space: SearchSpace,
    options: SearchOptions,
    storage: Path,
    requests: Any,
    experiment_dir: Path,
) -> SearchOutcome:
    name = experiment_dir.name
    index = _load_index(options.data, storage, space)
    _check_imagenet_weights(space, options)
    session = connect(options.address, num_cpus=options.num_cpus)
    if session.dashboard_url:
        print(f"Ray dashboard: {session.dashboard_url}", flush=True)
    check_cluster_resources(requests, node_shapes())
    fingerprint = dataset_fingerprint(index)
    checkpoints = _run_prerequisites(space, index, storage, fingerprint, options)
    write_experiment_metadata(
        experiment_dir,
        space_name=space.name,
        space_text=_space_text(space),
        overrides={
            "data": str(options.data.resolve()),
            "checkpoints": _plain_checkpoints(checkpoints),
        },
        dataset_fingerprint=fingerprint,
        argv=list(options.argv),
    )
    sharing = _sharing(space, checkpoints)
    if sharing is not None:
        print(f"prefix sharing: {sharing[1].summary()}", flush=True)
    tuner = _make_tuner(space, index, experiment_dir, checkpoints, options, sharing)
    with graceful_interrupt() as interrupt:
        results = tuner.fit()
    return SearchOutcome(
        name=name,
        experiment_dir=experiment_dir,
        dashboard_url=session.dashboard_url,
        num_trials=len(results),
        num_errors=results.num_errors,
        interrupted=interrupt.seen,
    )


# -- pre-flight ---------------------------------------------------------------------------------


def _check_imagenet_weights(space: SearchSpace, options: SearchOptions) -> None:
    """A local search fetches (or finds) the ImageNet weights its trials ask for before Ray
    starts, so that a missing file is one line rather than every trial failing inside Ray; a
    cluster's nodes have their own cache, so nothing is checked there."""
    if options.address or os.environ.get("RAY_ADDRESS") or options.trainable is not train_trial:
        return
    require_imagenet_weights(_every_run_config(space))


def _starts_local_ray(options: SearchOptions) -> bool:
    if options.address or os.environ.get("RAY_ADDRESS"):
        return False
    ray = sys.modules.get("ray")
    return ray is None or not ray.is_initialized()


def _refuse_uri_storage(storage: Path) -> None:
    """``s3://b/x`` parsed as a path becomes ``s3:/b/x``: a local folder named ``s3:``."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", str(storage)):
        raise UsageError(
            f"--storage {storage}: egotune writes results to a folder every node sees (NFS, a "
            "mounted volume), not to a bucket URI; mount the bucket or sync the folder to it "
            "(docs/cluster.md)"
        )


def _prepare_storage(storage: Path) -> Path:
    storage = storage.expanduser().resolve()
    try:
        storage.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=storage, prefix=".egotune-write-test-") as probe:
            probe.write(b"egotune")  # an empty file can still be created on a full disk
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise UsageError(
            f"--storage {storage}: not writable ({exc.strerror or exc}); "
            f"choose another folder or set ${STORAGE_ENV}"
        ) from None
    return storage


def _check_free_space(storage: Path, space: SearchSpace) -> None:
    """Room for the first checkpoints of the search's largest model, estimated from its shapes
    (with GTEA61's 61 classes, an upper bound for any subset)."""
    state = state_bytes(_every_run_config(space), len(GTEA61_CLASSES))
    free = shutil.disk_usage(storage).free
    if free < STATES_OF_HEADROOM * state:
        raise UsageError(
            f"--storage {storage}: only {_mib(free)} free; a trial of this search keeps "
            f"checkpoints of up to {_mib(state)} each and needs room for at least "
            f"{STATES_OF_HEADROOM} ({_mib(STATES_OF_HEADROOM * state)}); free some space or "
            "choose another folder"
        )


def _every_run_config(space: SearchSpace) -> list[dict[str, Any]]:
    """The configs of the search's trials and of its prerequisite runs (flat space cells)."""
    prerequisites = [{**space.fixed, **run.config} for run in space.prerequisite_runs()]
    return [*space.expand(), *prerequisites]


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def _check_experiment_dir(experiment_dir: Path, *, resume: bool) -> None:
    """A resumed experiment can be restored (a new one's folder is checked as it is claimed)."""
    if resume:
        from ray import tune

        if not tune.Tuner.can_restore(str(experiment_dir)):
            raise UsageError(
                f"--resume {experiment_dir.name}: no restorable experiment at {experiment_dir}; "
                "check --name and --storage (egotune results list shows the experiments)"
            )


def _load_index(data: Path, storage: Path, space: SearchSpace) -> DatasetIndex:
    """The dataset's index, after every check a trial would otherwise fail on inside Ray."""
    if not data.exists():
        raise UsageError(f"--data {data}: no such folder")
    index = discover(data)
    verify_once(index, storage)  # what changed since the last search on this storage
    _check_split_users(space, index)
    return index


def _check_split_users(space: SearchSpace, index: DatasetIndex) -> None:
    """Every trial's ``train_users``/``val_users`` exist; a user no trial uses gets a note."""
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    used: set[str] = set()
    for cell in space.expand():
        train, val = (cell.get(key, defaults[key]) for key in ("train_users", "val_users"))
        try:
            split_by_user(index, train, val)
        except ValueError as exc:
            raise UsageError(f"{space.source}: {exc}; choose users of {index.root}") from None
        used.update(train, val)
    unused = [user for user in index.users if user not in used]
    if unused:
        print(
            f"egotune: note: {', '.join(unused)} of {index.root} in neither train_users nor "
            "val_users: no trial uses them",
            file=sys.stderr,
        )


# -- prerequisites ------------------------------------------------------------------------------


def _run_prerequisites(
    space: SearchSpace,
    index: DatasetIndex,
    storage: Path,
    fingerprint: str,
    options: SearchOptions,
) -> dict[str, dict[tuple[tuple[str, Any], ...], str]]:
    """Execute (or reuse) every prerequisite run; returns checkpoint paths by name and match."""
    done: dict[str, dict[tuple[tuple[str, Any], ...], str]] = {}
    for run in space.prerequisite_runs():
        config = _prerequisite_config(space, run, done)
        path = _run_prerequisite(
            run.name, config, index, storage, fingerprint, options, trial_resources(space)
        )
        done.setdefault(run.name, {})[run.match] = path
    return done


def _prerequisite_config(
    space: SearchSpace,
    run: PrerequisiteRun,
    done: dict[str, dict[tuple[tuple[str, Any], ...], str]],
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
    storage: Path,
    fingerprint: str,
    options: SearchOptions,
    resources: Any,
) -> str:
    config = TrainConfig.from_dict(nest_config(flat_config))
    computed = {k: v for k, v in config.to_dict().items() if k not in RUNTIME_KEYS}
    folder = storage / PREREQUISITES_DIR / f"{name}-{_digest(computed, fingerprint)}"
    record_file = folder / "prerequisite.json"
    # runtime keys (loader workers, device, ...) do not change what the run computes; folders
    # of earlier versions were named after the whole configuration
    earlier = storage / PREREQUISITES_DIR / f"{name}-{_digest(config.to_dict(), fingerprint)}"
    for found in (record_file, earlier / "prerequisite.json"):
        if found.is_file():
            record = json.loads(found.read_text())
            if Path(record["checkpoint"]).is_file():
                print(f"prerequisite {name}: reusing {record['checkpoint']}", flush=True)
                return str(record["checkpoint"])
    print(f"prerequisite {name}: training {folder.name}", flush=True)
    checkpoint = _train_prerequisite(config, index, folder, options, resources)
    record = {
        "name": name,
        "config": config.to_dict(),
        "dataset": fingerprint,
        "checkpoint": checkpoint,
    }
    record_file.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record_file, record)
    return checkpoint


def _digest(config: dict[str, Any], fingerprint: str) -> str:
    text = json.dumps({"config": config, "data": fingerprint}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _train_prerequisite(
    config: TrainConfig,
    index: DatasetIndex,
    folder: Path,
    options: SearchOptions,
    resources: Any,
) -> str:
    """Train one prerequisite run as a one-trial Tuner with the space's per-trial resources."""
    from ray import tune

    store = str(folder / CHECKPOINTS_DIR)
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, index=index, store=store), resources
    )
    run_dir = folder / "run"
    if tune.Tuner.can_restore(str(run_dir)):
        select_classic_console()  # the restored reporter prints only on Tune's classic console
        tuner = tune.Tuner.restore(str(run_dir), trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=_flat_config(config),
            run_config=tune.RunConfig(
                name="run",
                storage_path=str(folder),
                failure_config=tune.FailureConfig(max_failures=options.max_failures),
                checkpoint_config=_checkpoint_config(),
                verbose=options.verbose,
                progress_reporter=build_progress_reporter(None),
            ),
        )
    with graceful_interrupt() as interrupt:
        result = tuner.fit()[0]
    if interrupt.seen:  # nothing to resume by name yet: the same command reuses the run
        raise KeyboardInterrupt
    if result.error is not None:
        raise EgotuneError(f"prerequisite run {folder.name} failed: {result.error}")
    pointer = read_pointer(result.checkpoint.path) if result.checkpoint is not None else None
    if pointer is None or not pointer.get("final_best"):
        raise EgotuneError(f"prerequisite run {folder.name} left no best weights")
    # The engine's own best (the first epoch reaching the best accuracy, as the report selects),
    # complete with its frozen weights, written by the trial at its end.
    trial_id = str((result.metrics or {}).get("trial_id"))
    best = folder / CHECKPOINTS_DIR / trial_id / pointer["final_best"]
    if not best.is_file():
        raise EgotuneError(f"prerequisite run {folder.name}: {best} is missing")
    return str(best)


def _flat_config(config: TrainConfig) -> dict[str, Any]:
    return flatten_config(config.to_dict())


# -- the tuner ----------------------------------------------------------------------------------


def _checkpoint_config() -> Any:
    """Keep every checkpoint Tune registers: each is a ``pointer.json`` of a few hundred bytes
    (the trial's own files are pruned by the trial), and a limit would make Tune force an
    experiment snapshot after every checkpoint to keep its view of the deleted ones consistent."""
    from ray import tune

    return tune.CheckpointConfig(num_to_keep=None)


def _planned_epochs(tune_config: Mapping[str, Any]) -> int:
    config = TrainConfig.from_dict(resolve_trial_config(tune_config))
    return sum(config.stage_settings(stage).epochs or 0 for stage in config.stages)


def _sharing(
    space: SearchSpace, checkpoints: dict[str, dict[tuple[tuple[str, Any], ...], str]]
) -> tuple[list[dict[str, Any]], SharingPlan] | None:
    """The trials and their prefix-sharing plan, when the space shares some epochs."""
    if space.sharing_plan() is None:
        return None
    configs = trial_configs(space, checkpoints)
    plan = plan_sharing([TrainConfig.from_dict(resolve_trial_config(c)) for c in configs])
    return (configs, plan) if plan.shares else None


def _make_tuner(
    space: SearchSpace,
    index: DatasetIndex,
    experiment_dir: Path,
    checkpoints: dict[str, dict[tuple[tuple[str, Any], ...], str]],
    options: SearchOptions,
    sharing: tuple[list[dict[str, Any]], SharingPlan] | None = None,
) -> Any:
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from tuner._prefix_searcher import PrefixSharingSearcher
    from tuner.callbacks import ParquetResultsCallback

    store = str(experiment_dir / CHECKPOINTS_DIR)
    trainable = tune.with_resources(
        tune.with_parameters(options.trainable, index=index, store=store), trial_resources(space)
    )
    if options.resume:
        select_classic_console()  # the restored reporter prints only on Tune's classic console
        return tune.Tuner.restore(str(experiment_dir), trainable, resume_errored=True)
    callback = ParquetResultsCallback(
        experiment_dir, config_resolver=_hyperparameters, planned_epochs=_planned_epochs
    )
    tune_config = dataclasses.replace(
        build_tune_config(space, experiment_dir), reuse_actors=options.reuse_actors
    )
    param_space = build_param_space(space, checkpoints)
    if sharing is not None:
        configs, plan = sharing
        # values every trial has stay in the param space: trial names show what varies
        param_space = {
            key: value
            for key, value in configs[0].items()
            if all(key in config and config[key] == value for config in configs)
        }
        varying = [{k: v for k, v in c.items() if k not in param_space} for c in configs]
        searcher: Any = PrefixSharingSearcher(varying, plan, store)
        if space.scheduler.max_concurrent:
            searcher = ConcurrencyLimiter(searcher, max_concurrent=space.scheduler.max_concurrent)
        tune_config = dataclasses.replace(
            tune_config, search_alg=searcher, num_samples=len(configs)
        )
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune_config,
        run_config=tune.RunConfig(
            name=experiment_dir.name,
            storage_path=str(experiment_dir.parent),
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
            checkpoint_config=_checkpoint_config(),
            callbacks=[callback],
            verbose=options.verbose,
            progress_reporter=build_progress_reporter(space),
        ),
    )


def _hyperparameters(tune_config: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's TrainConfig values (what the Parquet columns hold), without internals."""
    return resolve_trial_config(tune_config)


def _space_text(space: SearchSpace) -> str:
    import yaml

    return yaml.safe_dump(space.document, sort_keys=False)


def _plain_checkpoints(
    checkpoints: dict[str, dict[tuple[tuple[str, Any], ...], str]],
) -> dict[str, list[dict[str, Any]]]:
    return {
        name: [{"match": dict(match), "checkpoint": path} for match, path in runs.items()]
        for name, runs in checkpoints.items()
    }
