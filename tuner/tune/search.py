"""Run a search space on Ray Tune: checks, prerequisites, the Tuner, streamed Parquet results.

``run_search`` does, in order:

1. pre-flight checks that fail in seconds with one line naming the flag: a writable storage with
   free space, an experiment folder that is new (or restorable with ``--resume``), the dataset
   (structure, every frame decodable, the users the trials split on), a reachable cluster, and a
   per-trial resource request that fits some node;
2. the space's prerequisite runs (:mod:`tuner.tune.prerequisites`: e.g. the stage-1 model a
   stage-2 grid starts from), each executed once and reused by every trial and by later searches
   with the same configuration and dataset fingerprint (``<storage>/_prerequisites/``);
3. the Tuner (or ``Tuner.restore``), with a checkpoint per epoch, retries from the last
   checkpoint, and the Parquet callback writing ``trials.parquet`` and ``epochs.parquet``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
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
from tuner.errors import EgotuneError, UsageError
from tuner.results import STORAGE_ENV, write_experiment_metadata
from tuner.spaces import SearchSpace, SharingPlan
from tuner.storage import Bucket, TablePush, describe_error, is_uri, pull_tables, scratch_dir
from tuner.training.config import TrainConfig
from tuner.training.dataset_checks import DATASET_CHECKS_DIR, verify_once
from tuner.tune.claim import (
    LOCK_FILE,
    OWNER_FILE,
    BucketLease,
    ExperimentClaim,
    claim_new_experiment,
    describe,
)
from tuner.tune.console import build_progress_reporter, select_classic_console
from tuner.tune.interrupt import graceful_interrupt
from tuner.tune.params import (
    build_param_space,
    resolve_trial_config,
    trial_configs,
    trial_resources,
    with_recipe_modules,
)
from tuner.tune.preflight import (
    check_cluster_resources,
    check_local_resources,
    local_gpu_count,
    require_imagenet_weights,
    resource_requests,
    state_bytes,
)
from tuner.tune.prerequisites import PREREQUISITES_DIR, run_prerequisites
from tuner.tune.schedulers import build_tune_config
from tuner.tune.session import connect, node_shapes
from tuner.tune.trainable import CHECKPOINTS_DIR, checkpoint_config, train_trial

__all__ = [
    "BUCKET_SNAPSHOT_S",
    "DATASET_CHECKS_DIR",
    "DEFAULT_MAX_FAILURES",
    "PREREQUISITES_DIR",
    "STATES_OF_HEADROOM",
    "SearchOptions",
    "SearchOutcome",
    "run_search",
]

DEFAULT_MAX_FAILURES = 3

BUCKET_SNAPSHOT_S = 2
"""Seconds between two uploads of Tune's experiment snapshot when ``--storage`` is a bucket."""

STATES_OF_HEADROOM = 2
"""Free space ``--storage`` must have when a search starts, in resume states of its largest
trial: the first state a trial keeps and the one it writes next."""


@dataclass
class SearchOptions:
    """Everything about a search that is not the space itself."""

    data: Path
    storage: Path | str
    """A folder every node sees, or a bucket URI (``s3://bucket/prefix``): then each node works
    in its scratch folder and the bucket keeps everything (:mod:`tuner.storage`)."""
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
    bucket = _check_bucket(str(options.storage), space) if is_uri(options.storage) else None
    if bucket is None:
        _refuse_uri_storage(Path(options.storage))
    storage = _prepare_storage(scratch_dir(bucket.uri) if bucket else Path(options.storage))
    requests = resource_requests(space, options.resource_flags)
    if _starts_local_ray(options):  # what this machine cannot give, before Ray starts
        check_local_resources(requests, options.num_cpus or os.cpu_count() or 1, local_gpu_count())
    _check_free_space(storage, space)
    # egotune's tables hold every metric (and the per-video predictions); Tune's per-trial
    # result.json and progress.csv would copy them into every trial folder. Without them, the
    # result grid Tune builds at the end cannot read per-trial metrics and would say so.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if bucket is not None:
        # Tune's snapshot of the search (which checkpoint each trial restores from) is what a
        # resume after a lost driver starts from; in a bucket it is as old as its last upload.
        # Every few seconds (Tune's default: 10 at least), it names a state the trial still
        # keeps (the newest three), so a resumed trial continues instead of replaying from its
        # first epoch. Each upload is Tune's JSON of the trials, a few tens of kB.
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(BUCKET_SNAPSHOT_S))
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    for warning in space.warnings:
        print(f"warning: {warning}", flush=True)
    lease = _lease_in_bucket(space, bucket, options) if bucket else None
    try:
        claim = _claim_experiment(space, storage, options, lease)
    except BaseException:
        if lease is not None:
            lease.release()
        raise
    try:
        outcome = _run_claimed(space, options, storage, requests, claim.folder, lease)
    except BaseException:
        claim.release()
        if lease is not None:
            lease.release()
        _remove_if_unused(claim.folder, resumed=options.resume)
        raise
    claim.release()
    if lease is not None:
        lease.release()
    return outcome


def _default_name(space: SearchSpace) -> str:
    return f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _claim_experiment(
    space: SearchSpace, storage: Path, options: SearchOptions, lease: BucketLease | None = None
) -> ExperimentClaim:
    """The experiment's folder, claimed for this search before anything else runs
    (:mod:`tuner.tune.claim`). On a bucket, the lease there decided the name, and the folder is
    this node's scratch copy of the experiment: made anew, its tables pulled from the bucket."""
    if lease is not None:
        folder = storage / lease.name
        if folder.exists():
            shutil.rmtree(folder)  # an earlier copy: the bucket holds what counts
        folder.mkdir(parents=True)
        claim = ExperimentClaim.take(folder)
        if options.resume:
            try:
                pull_tables(lease.bucket, folder)
            except OSError as exc:
                claim.release()
                raise EgotuneError(f"--storage {lease.bucket.uri}: {describe_error(exc)}") from None
            _print_takeover(lease.name, lease.previous)
        return claim
    if not options.resume:
        name = options.name or _default_name(space)
        return claim_new_experiment(storage, name, default=options.name is None)
    assert options.name is not None
    folder = storage / options.name
    _check_experiment_dir(str(folder), options.name)
    claim = ExperimentClaim.take(folder)
    _print_takeover(options.name, claim.previous)
    return claim


def _print_takeover(name: str, previous: dict[str, Any] | None) -> None:
    if previous is not None:
        print(
            f"egotune: note: {name} was last run by {describe(previous)}, which "
            "ended without releasing it (killed); this search takes it over",
            file=sys.stderr,
            flush=True,
        )


def _lease_in_bucket(space: SearchSpace, bucket: Bucket, options: SearchOptions) -> BucketLease:
    """The search's lease on its experiment's folder in the bucket (:class:`BucketLease`)."""
    if options.resume:
        assert options.name is not None
        _check_experiment_dir(f"{bucket.uri}/{options.name}", options.name)
        return BucketLease.take(bucket, options.name)
    name = options.name or _default_name(space)
    return BucketLease.new(bucket, name, default=options.name is None)


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
    lease: BucketLease | None = None,
) -> SearchOutcome:
    name = experiment_dir.name
    index = _load_index(options.data, storage, space)
    _check_imagenet_weights(space, options)
    _check_rungs(space, len(index.classes))
    session = connect(options.address, num_cpus=options.num_cpus)
    if session.dashboard_url:
        print(f"Ray dashboard: {session.dashboard_url}", flush=True)
    check_cluster_resources(requests, node_shapes())
    fingerprint = dataset_fingerprint(index)
    checkpoints = run_prerequisites(
        space,
        index,
        str(options.storage).rstrip("/") if lease else storage,
        fingerprint,
        options.max_failures,
        options.verbose,
    )
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
    if lease is not None:
        _push_tables(TablePush(experiment_dir, lease.bucket), lease.bucket)
    sharing = _sharing(space, checkpoints)
    if sharing is not None:
        print(f"prefix sharing: {sharing[1].summary()}", flush=True)
    if space.scheduler.rungs is not None:
        print(f"fidelity schedule: {_describe_rungs(space)}", flush=True)
    where = _Where(experiment_dir, lease.bucket.uri if lease else None)
    tuner = _make_tuner(space, index, where, checkpoints, options, sharing)
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


def _describe_rungs(space: SearchSpace) -> str:
    """``epochs 1-10 at 4 frames, 193 px; 11-35 at 8 frames; then each trial's own size; ASHA
    compares the trials after epochs 10, 35``."""
    rungs = space.scheduler.rungs
    assert rungs is not None
    parts, first = [], 1
    for rung in rungs.rungs:
        size = [
            f"{rung.frames} frames" if rung.frames else "",
            f"{rung.crop_size} px" if rung.crop_size else "",
        ]
        shown = ", ".join(p for p in size if p) or "full size"
        parts.append(f"{first}-{rung.until} at {shown}")
        first = rung.until + 1
    milestones = ", ".join(str(m) for m in rungs.milestones)
    return (
        f"epochs {'; '.join(parts)}; then each trial's own size; ASHA compares the trials after "
        f"epochs {milestones} (eta {space.scheduler.reduction_factor:g})"
    )


def _check_rungs(space: SearchSpace, num_classes: int) -> None:
    """A fidelity schedule's rungs must be cheaper than every trial and fit its weights."""
    rungs = space.scheduler.rungs
    if rungs is None:
        return
    from tuner.training.cost import check_rung_shapes

    for cfg in {*space.trial_configs}:
        for i, rung in enumerate(rungs.rungs):
            try:
                cfg.replace(
                    frames=rung.frames or cfg.frames, crop_size=rung.crop_size or cfg.crop_size
                )
            except ValueError as exc:
                raise EgotuneError(f"{space.source}: scheduler.rungs[{i}].{exc}") from None
            for key in ("frames", "crop_size"):
                value = getattr(rung, key)
                if value is not None and value > getattr(cfg, key):
                    raise EgotuneError(
                        f"{space.source}: scheduler.rungs: {key} {value} (until epoch "
                        f"{rung.until}) is larger than the trials' {key} {getattr(cfg, key)}"
                    )
        try:
            check_rung_shapes(cfg, rungs, num_classes)
        except EgotuneError as exc:
            raise EgotuneError(f"{space.source}: {exc}") from None


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


def _every_run_config(space: SearchSpace) -> list[TrainConfig]:
    """The configurations of the search's trials and of its prerequisite runs."""
    return [*space.trial_configs, *space.prerequisite_configs]


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def _check_experiment_dir(experiment: str, name: str) -> None:
    """A resumed experiment (a folder or a bucket URI) can be restored (a new one's folder is
    checked as it is claimed)."""
    from ray import tune

    if not tune.Tuner.can_restore(experiment):
        raise UsageError(
            f"--resume {name}: no restorable experiment at {experiment}; "
            "check --name and --storage (egotune results list shows the experiments)"
        )


def _check_bucket(uri: str, space: SearchSpace) -> Bucket:
    """``--storage URI``: a bucket this machine can list and write (a probe object written and
    deleted), for a search whose state can live there."""
    if space.scheduler.uses_optuna:
        raise UsageError(
            f"--storage {uri}: an Optuna search keeps its study in a SQLite file, which an object "
            "store cannot lock; run it with --storage on a folder every node sees (docs/cluster.md)"
        )
    probe = f".egotune-write-test-{uuid.uuid4().hex[:12]}"
    try:
        bucket = Bucket(uri)
        bucket.write_bytes(probe, b"egotune")
        bucket.delete(probe)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--storage {uri}: {describe_error(exc, uri)}") from None
    return bucket


def _push_tables(push: TablePush, bucket: Bucket) -> None:
    try:
        push.push()
    except OSError as exc:
        raise EgotuneError(f"--storage {bucket.uri}: {describe_error(exc)}") from None


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


# -- the tuner ----------------------------------------------------------------------------------


def _planned_epochs(tune_config: Mapping[str, Any]) -> int:
    config = TrainConfig.from_trial(resolve_trial_config(tune_config))
    return config.total_epochs


def _sharing(
    space: SearchSpace, checkpoints: dict[str, dict[tuple[tuple[str, Any], ...], str]]
) -> tuple[list[dict[str, Any]], SharingPlan] | None:
    """The trials (with their prerequisites' checkpoints) and the space's prefix-sharing plan,
    when it shares some epochs."""
    plan = space.sharing_plan()
    if plan is None or not plan.shares:
        return None
    return trial_configs(space, checkpoints), plan


@dataclass(frozen=True)
class _Where:
    """Where a search keeps its experiment: ``folder`` (the experiment folder every node sees,
    or, with ``bucket``, this node's scratch copy of the bucket's experiment folder URI)."""

    folder: Path
    bucket: str | None = None

    @property
    def experiment(self) -> str:
        """What Tune restores from."""
        return self.bucket or str(self.folder)

    @property
    def store(self) -> str:
        """The trials' checkpoint store."""
        return f"{self.experiment}/{CHECKPOINTS_DIR}"


def _make_tuner(
    space: SearchSpace,
    index: DatasetIndex,
    where: _Where,
    checkpoints: dict[str, dict[tuple[tuple[str, Any], ...], str]],
    options: SearchOptions,
    sharing: tuple[list[dict[str, Any]], SharingPlan] | None = None,
) -> Any:
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from tuner.tune.callbacks import ParquetResultsCallback
    from tuner.tune.sharing.searcher import PrefixSharingSearcher

    experiment_dir, store = where.folder, where.store
    trainable = tune.with_resources(
        tune.with_parameters(options.trainable, index=index, store=store), trial_resources(space)
    )
    if options.resume:
        select_classic_console()  # the restored reporter prints only on Tune's classic console
        return tune.Tuner.restore(where.experiment, trainable, resume_errored=True)
    callback = ParquetResultsCallback(
        experiment_dir,
        config_resolver=_hyperparameters,
        planned_epochs=_planned_epochs,
        upload=where.bucket,
    )
    tune_config = dataclasses.replace(
        build_tune_config(space, experiment_dir, store), reuse_actors=options.reuse_actors
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
        param_space=with_recipe_modules(param_space),
        tune_config=tune_config,
        run_config=tune.RunConfig(
            name=experiment_dir.name,
            storage_path=where.experiment.rsplit("/", 1)[0],
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
            checkpoint_config=checkpoint_config(),
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
