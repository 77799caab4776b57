"""``egotune search`` and ``egotune demo``.

``search`` runs a bundled or user search space on a local Ray (default) or on a cluster
(``--address``); ``--resume EXP`` continues a killed search from what its experiment folder
recorded (space, overrides and dataset). ``demo`` generates the synthetic GTEA61 when it is absent
and runs the small ``demo`` space with ASHA on the CPU. Both end with the best trials, the
Fig. 10-style table, the paths of the tables and the next commands (:mod:`._search_summary`), or
with that report as JSON (``--json``; the live console then goes to stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuner.cli._names import (
    absolute_path,
    absolute_set_values,
    check_experiment_name,
    storage_location,
)
from tuner.cli.search_summary import print_search_summary, resume_command, search_summary
from tuner.cli.spaces import add_override_arguments, apply_override_arguments
from tuner.errors import EgotuneError, UsageError
from tuner.storage import scratch_dir

__all__ = ["DEMO_SYNTH", "register"]

DEMO_SPACE = "demo"
DEMO_DATA_DIR = "_data/synthetic-gtea61"
# Frames at the size training scales them to (64-pixel crops from 73-pixel-high frames), so
# nothing is drawn that the demo throws away.
DEMO_SYNTH = {"classes": 8, "videos_per_class": 4, "size": (130, 73), "seed": 1}


def register(subparsers: Any) -> None:
    search = subparsers.add_parser(
        "search",
        help="run a search space on Ray Tune",
        description="Run a search space (bundled name or YAML path) on a local Ray or a cluster.",
    )
    search.add_argument("space", nargs="?", help="bundled space name or YAML file")
    search.add_argument("--data", type=Path, help="GTEA61 root folder")
    search.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    search.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="EXP",
        help="continue experiment EXP (or --name) from its checkpoints",
    )
    add_search_arguments(search)
    _add_json_argument(search)
    search.set_defaults(handler=run_search_command)

    demo = subparsers.add_parser(
        "demo",
        help="run the small demo search on the synthetic dataset",
        description="Generate the synthetic GTEA61 if absent and run the demo space with ASHA.",
    )
    _add_common_arguments(demo)
    demo.add_argument("--data", type=Path, help="where the synthetic dataset lives or is written")
    demo.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep the trials' resume states (by default only each trial's best weights stay)",
    )
    _add_json_argument(demo)
    demo.set_defaults(handler=run_demo_command)


def _add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the final report as JSON on stdout (the live console goes to stderr)",
    )


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``search`` and ``submit``: experiment, storage, retries, overrides."""
    _add_common_arguments(parser)
    add_override_arguments(parser)


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="experiment name (default: SPACE-DATE-TIME)")
    parser.add_argument(
        "--storage",
        type=storage_location,
        help="results folder every node sees, or a bucket (s3://bucket/prefix, gs://...; "
        "default: $EGOTUNE_STORAGE or ~/egotune-results)",
    )
    parser.add_argument(
        "--max-failures",
        type=int,
        default=None,
        metavar="N",
        help="retries of a failed trial from its last checkpoint (default 3)",
    )


def run_search_command(args: argparse.Namespace) -> int:
    from tuner.results import default_storage
    from tuner.spaces import load_space
    from tuner.tune.search import DEFAULT_MAX_FAILURES, SearchOptions

    storage = _storage(args.storage or default_storage())
    name = args.resume if isinstance(args.resume, str) else args.name
    if name is not None:
        check_experiment_name(name, "--resume" if isinstance(args.resume, str) else "--name")
    args.data = absolute_path(args.data)
    args.set_values = absolute_set_values(args.set_values)
    if args.max_failures is not None and args.max_failures < 0:
        raise UsageError(f"--max-failures {args.max_failures}: must be 0 or more")
    if args.resume:
        if name is None:
            raise UsageError("--resume: name the experiment (--resume EXP or --name EXP)")
        space, data = _recorded_search(storage, name, args)
    else:
        if args.space is None:
            raise UsageError("SPACE: name a search space (egotune spaces list shows them)")
        if args.data is None:
            raise UsageError("--data: required (the GTEA61 root folder)")
        space, data = apply_override_arguments(load_space(args.space), args), args.data
    options = SearchOptions(
        data=data,
        storage=storage,
        name=name,
        address=args.address,
        resume=bool(args.resume),
        max_failures=DEFAULT_MAX_FAILURES if args.max_failures is None else args.max_failures,
        resource_flags={} if args.resume else _resource_flags(args),
    )
    return _run_and_report(space, options, args)


def _resource_flags(args: argparse.Namespace) -> dict[str, float]:
    """The per-trial resources given on the command line, by the space's ``resources`` keys."""
    given = {"cpus": args.cpus_per_trial, "gpus": args.gpus_per_trial}
    return {key: value for key, value in given.items() if value is not None}


def _storage(storage: Path | str) -> Path | str:
    """``--storage``: a bucket URI as given, a folder made absolute (:func:`absolute_path`)."""
    return storage if isinstance(storage, str) else absolute_path(storage)


def _recorded_search(storage: Path | str, name: str, args: argparse.Namespace) -> tuple[Any, Path]:
    """The space and dataset a search ran with, from its experiment folder (in a bucket: from
    the local mirror of its tables)."""
    from tuner.results import mirror_storage, read_experiment_metadata
    from tuner.spaces import parse_space
    from tuner.training.config import load_yaml

    if isinstance(storage, str):
        storage = mirror_storage(storage, [name], tables=False)
    folder = storage / name
    try:
        metadata = read_experiment_metadata(folder)
    except FileNotFoundError:
        raise UsageError(
            f"--resume {name}: no experiment at {folder}; {_known_experiments(storage)}; "
            "check the name and --storage"
        ) from None
    except (OSError, ValueError) as exc:
        raise EgotuneError(
            f"--resume {name}: {folder}/experiment.json is unreadable ({exc}); restore it from a "
            "backup or start a new experiment"
        ) from None
    recorded_space = metadata.get("space") or {}
    if not recorded_space.get("text") or not recorded_space.get("name"):
        raise EgotuneError(
            f"--resume {name}: {folder}/experiment.json records no search space; restore it "
            "from a backup or start a new experiment"
        )
    space = parse_space(
        load_yaml(recorded_space["text"]),
        source=f"{folder}/experiment.json",
        name=recorded_space["name"],
    )
    recorded = recorded_space.get("overrides", {}).get("data")
    data = args.data or (Path(recorded) if recorded else None)
    if data is None:
        raise UsageError(f"--data: {folder} does not record its dataset; pass --data")
    return space, data


def _known_experiments(storage: Path) -> str:
    """The experiments ``--resume`` could continue in ``storage``, for its error message."""
    from tuner.results import METADATA_FILE

    if not storage.is_dir():
        return f"{storage} does not exist"
    names = sorted(p.name for p in storage.iterdir() if (p / METADATA_FILE).is_file())
    if not names:
        return f"{storage} holds no experiments"
    return f"experiments in {storage}: {', '.join(names)}"


def run_demo_command(args: argparse.Namespace) -> int:
    from tuner.results import default_storage
    from tuner.spaces import load_space
    from tuner.tune.search import DEFAULT_MAX_FAILURES, SearchOptions

    if isinstance(args.storage, str):
        raise UsageError(
            f"--storage {args.storage}: the demo writes its dataset into a local folder; "
            "pass a folder (egotune search takes a bucket)"
        )
    storage = absolute_path(args.storage or default_storage())
    if args.name is not None:
        check_experiment_name(args.name, "--name")
    data = absolute_path(args.data) or storage / DEMO_DATA_DIR
    with _console(args.json):
        if args.data is None:
            _check_demo_storage(storage)
        _synthesize_demo_data(data)
    options = SearchOptions(
        data=data,
        storage=storage,
        name=args.name,
        max_failures=DEFAULT_MAX_FAILURES if args.max_failures is None else args.max_failures,
    )
    classes = int(DEMO_SYNTH["classes"])  # type: ignore[call-overload]
    planted = args.data is None  # the demo's own synthetic set, not a dataset of the user's
    with _planted_defects_noted(data, args.json) if planted else contextlib.nullcontext():
        return _run_and_report(
            load_space(DEMO_SPACE),
            options,
            args,
            chance=100 / classes,
            slim_checkpoints=not args.keep_checkpoints,
        )


@contextlib.contextmanager
def _planted_defects_noted(data: Path, to_stderr: bool) -> Iterator[None]:
    """The synthetic dataset carries GTEA61's repairable defects on purpose (hidden files,
    missing motion maps), so the loader's warning about them is expected in the demo: say so
    instead of warning about the demo's own data."""
    import warnings

    from data_pipeline import DatasetWarning

    print(
        f"egotune: note: the demo's synthetic GTEA61 ({data}) carries the real dataset's "
        "repairable defects on purpose (hidden files, missing motion maps); the search tolerates "
        f"them as on GTEA61 itself (egotune data check {data} lists them)",
        file=sys.stderr if to_stderr else sys.stdout,
        flush=True,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*: tolerating ", category=DatasetWarning)
        yield


def _slim_checkpoints(experiment_dir: Path) -> int:
    """Remove the trials' resume states (``state-e*.pt``, the branch states of prefix sharing
    and unfinished writes of a trial the scheduler stopped), keeping each trial's best weights
    (``best.pt``, or its newest ``best-e*.pt`` when the scheduler stopped it first); returns the
    bytes freed. The finished demo is never resumed, and ``results cam`` reads the best weights."""
    from tuner.training.checkpoints.writer import CHECKPOINTS_DIR, FINAL_BEST

    freed = 0
    for trial in sorted((experiment_dir / CHECKPOINTS_DIR).glob("*/")):
        bests = sorted(trial.glob("best-e*.pt"))
        final = trial / FINAL_BEST
        kept = final if final.is_file() or not bests else bests[-1]
        states = [*trial.glob("state-e*.pt"), *trial.glob("branch-e*.pt"), trial / "latest.pt"]
        for path in [*states, *trial.glob(".*.tmp"), *bests]:
            if path != kept and path.is_file():
                freed += path.stat().st_size
                path.unlink()
    return freed


def _check_demo_storage(storage: Path) -> None:
    """The demo writes its dataset into the storage folder: refuse one it cannot write to,
    naming the flag, before anything is drawn."""
    from tuner.results import STORAGE_ENV

    try:
        storage.mkdir(parents=True, exist_ok=True)
        probe = storage / f".egotune-write-test-{os.getpid()}"
        probe.write_bytes(b"egotune")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"--storage {storage}: not writable ({exc.strerror or exc}); choose another folder "
            f"or set ${STORAGE_ENV}"
        ) from None


def _synthesize_demo_data(data: Path) -> None:
    from data_pipeline import synthesize

    if any((folder / "processed_frames2").is_dir() for folder in (data, data / "GTEA61")):
        return
    summary = synthesize(data, **DEMO_SYNTH)  # type: ignore[arg-type]
    print(
        f"synthetic GTEA61 written to {data}: {summary.videos} videos of "
        f"{len(summary.class_names)} classes in {summary.seconds:.1f} s",
        flush=True,
    )


def _run_and_report(
    space: Any,
    options: Any,
    args: argparse.Namespace,
    chance: float | None = None,
    *,
    slim_checkpoints: bool = False,
) -> int:
    from tuner.tune.search import run_search
    from tuner.tune.session import ray_running, stop_ray

    started = time.monotonic()
    ray_was_running = ray_running()
    with _console(args.json):
        _leave_job_working_dir(options)
        outcome = run_search(space, options)
        if not ray_was_running:
            stop_ray()  # flushes the workers' last lines before the report, not after it
    if outcome.interrupted:
        return _report_interrupted(outcome, options, args, time.monotonic() - started)
    if slim_checkpoints:
        freed = _slim_checkpoints(outcome.experiment_dir)
        print(
            f"\nCheckpoints: each trial's best weights kept, its resume states removed "
            f"({freed / 2**20:,.0f} MiB; egotune demo --keep-checkpoints keeps them).",
            file=sys.stderr if args.json else sys.stdout,
        )
    remote = options.address or os.environ.get("RAY_ADDRESS")
    summary = search_summary(
        outcome.experiment_dir,
        space,
        storage_flag=_storage_flag(options.storage),
        seconds=time.monotonic() - started,
        num_errors=outcome.num_errors,
        chance=chance,
        dashboard_url=outcome.dashboard_url if remote else None,  # a local Ray stops with us
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_search_summary(summary)
    return 1 if outcome.num_errors else 0


def _report_interrupted(
    outcome: Any, options: Any, args: argparse.Namespace, seconds: float
) -> int:
    """Ctrl-C: no results to report, only where the state is and how to continue (exit 130, as
    a shell reports a command stopped by SIGINT)."""
    command = resume_command(outcome.name, _storage_flag(options.storage))
    if args.json:
        report = {
            "experiment": outcome.name,
            "folder": str(outcome.experiment_dir),
            "interrupted": True,
            "seconds": round(seconds, 1),
            "resume": command,
        }
        print(json.dumps(report, indent=2))
    else:
        print(
            f"\nSearch {outcome.name} interrupted after {seconds:.0f} s: its trials stopped "
            f"where they were; the state is saved in {outcome.experiment_dir}.\n"
            f"Continue it with:\n  {command}"
        )
    return 130


@contextlib.contextmanager
def _console(to_stderr: bool) -> Iterator[None]:
    """With ``--json``, everything the run prints (Tune's tables included) goes to stderr."""
    if not to_stderr:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _storage_flag(storage: Path | str) -> Path | str | None:
    """``--storage`` for the next commands, unless it is the default folder."""
    from tuner.results import default_storage

    if isinstance(storage, str):
        return storage
    return None if storage.expanduser().resolve() == default_storage().resolve() else storage


def _leave_job_working_dir(options: Any) -> None:
    """Inside a Ray job with a ``working_dir``, work from the storage folder instead.

    Ray unpacks the job's working_dir under the node's ``runtime_resources`` and may delete it
    once trial workers on other nodes release it, while the driver still stands in it (Tune
    then fails in ``os.getcwd()`` when it collects the results). The space is already loaded
    by now, and the paths are made absolute first.
    """
    if f"{os.sep}runtime_resources{os.sep}" not in os.getcwd():
        return
    options.data = options.data.resolve()
    folder = scratch_dir() if isinstance(options.storage, str) else options.storage.resolve()
    options.storage = options.storage if isinstance(options.storage, str) else folder
    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(folder)
