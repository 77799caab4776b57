"""``egotune replay``: what other schedulers, and prefix sharing, would have spent on a finished
experiment.

``egotune replay EXP --scheduler asha`` replays the recorded learning curves of experiment EXP
(see :mod:`tuner.tune.replay`) under each chosen scheduler and seed, and prints the epochs each
search consumed until one of its trials came within ``--tolerance`` points of the experiment's best,
that count as a fraction of the experiment's own epochs, and the best value it reached.

Every replay (and ``egotune replay EXP`` alone) also prints what prefix sharing
(:func:`tuner.spaces.plan_sharing`) saves on the recorded trials: the trial-epochs they trained,
those a search with sharing trains, and the recorded epoch seconds of the difference."""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuner.cli._help import plain_help
from tuner.errors import UsageError
from tuner.spaces import REPLAYABLE, Algorithm

__all__ = ["register"]

"""Algorithms a replay can run: a population search needs states, not recorded curves."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay a finished experiment's curves under other schedulers",
        description=plain_help(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("experiment", metavar="EXP", help="experiment name or folder")
    parser.add_argument(
        "--storage",
        type=Path,
        help="results folder (default: $EGOTUNE_STORAGE or ~/egotune-results)",
    )
    parser.add_argument(
        "--scheduler",
        action="append",
        default=[],
        metavar="ALG",
        help="grid, random, asha, optuna or optuna+asha; repeat or separate with commas "
        "(none: only what prefix sharing saves)",
    )
    parser.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds 0..N-1 (3)")
    parser.add_argument("--grace-period", type=int, metavar="E", help="ASHA (default max_t/10)")
    parser.add_argument("--reduction-factor", type=float, metavar="F", help="ASHA (default 3)")
    parser.add_argument(
        "--num-samples", type=int, metavar="N", help="random/Optuna trials (default: as recorded)"
    )
    parser.add_argument(
        "--max-concurrent", type=int, default=4, metavar="N", help="trials at once (4)"
    )
    parser.add_argument(
        "--tolerance", type=float, default=1.0, metavar="P", help="points from the best (1)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=_replay)


def _replay(args: argparse.Namespace) -> int:
    from tuner.tune.replay import ReplaySettings, load_recorded, replay_search

    algorithms = _algorithms(args.scheduler, REPLAYABLE)
    _check_flags(args, algorithms)
    curves = load_recorded(args.experiment, args.storage)
    sharing = _sharing(args.experiment, args.storage)
    runs = []
    for algorithm in algorithms:
        for seed in range(args.seeds):
            settings = ReplaySettings(
                algorithm,
                seed=seed,
                num_samples=args.num_samples,
                grace_period=args.grace_period,
                reduction_factor=args.reduction_factor,
                max_concurrent=args.max_concurrent,
                tolerance=args.tolerance,
            )
            runs.append(replay_search(curves, settings))
    report = {
        "experiment": curves.experiment,
        "metric": curves.metric,
        "mode": curves.mode,
        "trials": len(curves.curves),
        "grid_epochs": curves.total_epochs,
        "grid_best": curves.best,
        "tolerance": args.tolerance,
        "target": curves.target(args.tolerance),
        "searches_over": list(curves.keys) if curves.factorial else ["recorded_trial"],
        "runs": [run.to_dict() for run in runs],
        "sharing": sharing,
    }
    print(json.dumps(report, indent=2) if args.json else _table(report))
    return 0


def _sharing(experiment: str, storage: Path | None) -> dict[str, Any] | None:
    """:func:`tuner.spaces.recorded_savings` of the experiment; ``None`` when its trials'
    configurations cannot be read back (tables of another trainable)."""

    from tuner.results import load_experiment
    from tuner.spaces import recorded_savings
    from tuner.training.config import TrainConfig

    done = load_experiment(experiment, storage)
    names = set(TrainConfig.keys()) - {"seed"}
    keys = [c for c in done.trials.columns if str(c).split(".")[0] in names]
    configs = []
    try:
        for _, row in done.trials.iterrows():
            values = {key: _plain(row[key]) for key in keys if not _missing(row[key])}
            if not _missing(row.get("seed")):
                values["seed"] = int(row["seed"])
            configs.append(TrainConfig.from_trial(values))
    except (ValueError, TypeError):
        return None
    return recorded_savings(done.trials, done.epochs, configs)


def _plain(value: Any) -> Any:
    """A table value as the configuration has it (list columns are stored as JSON text)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, str) and value.startswith("["):
        return json.loads(value)
    return value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _algorithms(values: Sequence[str], known: Sequence[str]) -> list[str]:
    chosen = [name.strip() for value in values for name in value.split(",") if name.strip()]
    for name in chosen:
        if name not in known:
            raise UsageError(f"--scheduler {name}: choose from {', '.join(known)}")
    return list(dict.fromkeys(chosen))


def _check_flags(args: argparse.Namespace, algorithms: Sequence[str]) -> None:
    if args.seeds < 1:
        raise UsageError(f"--seeds {args.seeds}: must be 1 or more")
    if args.num_samples is not None and args.num_samples < 1:
        raise UsageError(f"--num-samples {args.num_samples}: must be 1 or more")
    chosen = [Algorithm(name) for name in algorithms]
    sampling = {Algorithm.RANDOM, Algorithm.OPTUNA, Algorithm.OPTUNA_ASHA}
    if args.num_samples is not None and not set(chosen) & sampling:
        raise UsageError("--num-samples: only random, optuna and optuna+asha use it")
    if args.tolerance < 0:
        raise UsageError(f"--tolerance {args.tolerance:g}: must be 0 or more")
    asha = any(algorithm.uses_asha for algorithm in chosen)
    for flag, value in (
        ("--grace-period", args.grace_period),
        ("--reduction-factor", args.reduction_factor),
    ):
        if value is not None and not asha:
            raise UsageError(f"{flag}: only asha and optuna+asha use it")


def _table(report: dict[str, Any]) -> str:
    unit = "%" if report["metric"].endswith("_acc") else ""
    sign = "-" if report["mode"] == "max" else "+"
    lines = [
        f"replay of {report['experiment']}: {report['trials']} trials, "
        f"{report['grid_epochs']} epochs, best {report['metric']} {report['grid_best']:.2f}{unit}; "
        f"target {report['target']:.2f}{unit} (best {sign} {report['tolerance']:g})",
    ]
    if report["runs"]:
        lines.append(
            f"{'scheduler':<12} {'seed':>4} {'trials':>6} {'epochs':>6} {'to target':>9} "
            f"{'of grid':>7} {'best':>7}"
        )
    for run in report["runs"]:
        to_target = run["epochs_to_target"]
        fraction = run["fraction_to_target"]
        lines.append(
            f"{run['algorithm']:<12} {run['seed']:>4} {run['trials']:>6} {run['epochs']:>6} "
            f"{'never' if to_target is None else to_target:>9} "
            f"{'-' if fraction is None else f'{fraction:.1%}':>7} {run['best']:>7.2f}"
        )
    lines += _summaries(report["runs"])
    sharing = report.get("sharing")
    if sharing:
        total, shared = sharing["trial_epochs"], sharing["with_sharing"]
        fewer = 100.0 * (total - shared) / total if total else 0.0
        lines.append(
            f"prefix sharing: the {sharing['trials']} trials recorded {total:,} trial-epochs "
            f"(trained {sharing['trained_trial_epochs']:,}); with sharing {shared:,} "
            f"({fewer:.0f}% fewer), {sharing['seconds_saved']:.0f} s of the "
            f"{sharing['recorded_seconds']:.0f} s of recorded epochs saved"
        )
    return "\n".join(lines)


def _summaries(runs: Sequence[dict[str, Any]]) -> list[str]:
    """One line per scheduler: seeds that reached the target and their median fraction."""
    lines = []
    for algorithm in dict.fromkeys(run["algorithm"] for run in runs):
        mine = [run for run in runs if run["algorithm"] == algorithm]
        reached = [run["fraction_to_target"] for run in mine if run["epochs_to_target"]]
        median = (
            f", median {statistics.median(reached):.1%} of the grid's epochs" if reached else ""
        )
        lines.append(f"{algorithm}: target reached in {len(reached)}/{len(mine)} seeds{median}")
    return lines
