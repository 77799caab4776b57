"""Scheduler efficiency by replay: grid, random, ASHA and Optuna on a recorded grid's curves.

Usage: ``egotune bench replay_efficiency [EXP] [--storage DIR] [--seeds N]
[--schedulers grid,random,asha,optuna,optuna+asha] [--grace-period G] [--reduction-factor F]
[--asha-sweep G:F,G:F,...] [--max-concurrent C] [--tolerance P] [--json] [--no-record]``;
``egotune bench replay_efficiency --fidelity [LOW_EXP] [--rungs E1,E2] [--seeds N]``

With ``--fidelity`` it replays a fidelity schedule on the two-fidelity fixture instead (EXP the
full-size recording, LOW_EXP the cheap one; by default the shipped ``fig10-fidelity-t4-64`` and
``fig10-fidelity-t2-48``), against epoch-only ASHA at ``egotune search``'s defaults and
Optuna+ASHA over the same seeds, and scores each run in counted FLOPs and in whether what it found
is within the best's McNemar noise band (:mod:`bench.fidelity_replay`).

EXP (default: the shipped fixture ``bench/fixtures/fig10-synthetic``, Fig. 10's 36-trial grid
recorded by ``egotune search`` on the synthetic dataset, see bench/fixtures/README.md) is replayed
with :mod:`tuner.tune.replay` under each scheduler and seed. For each run: the epochs consumed until
a trial came within ``--tolerance`` points of the grid's best, that as a fraction of the grid's
epochs, and the best reached. The goal measured: ASHA within 1 point of the grid's best using at
most 25% of the grid's epochs in at least 8 of 10 seeds. ``--asha-sweep`` replays ASHA with other
(grace period, reduction factor) pairs over the same seeds.

ASHA (and Optuna+ASHA) run here with a grace period of 4 epochs and a reduction factor of 3, not
with ``egotune search``'s defaults (a tenth of ``max_t``, so 2 of the fixture's 20 epochs, and 3).
On the fixture a single trial reaches the grid's best, late (epoch 18); it ranks 19th of 36 at
epoch 3 and 28th at epoch 6 but first at 4 and 5th at 12: rungs at 3 or 6 (the default's are 2, 6
and 18) stop it in most seeds, rungs at 4 and 12 do not. The
recorded sweep (``2:3`` is the search default) is the evidence; it is measured on the same
fixture, so it shows what a grace period must clear, not a universal value.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.record import record
from tuner.spaces import REPLAYABLE
from tuner.tune.replay import (
    RecordedCurves,
    ReplayOutcome,
    ReplaySettings,
    load_recorded,
    replay_search,
)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "fig10-synthetic"
FIDELITY_FIXTURES = (
    Path(__file__).resolve().parent / "fixtures" / "fig10-fidelity-t4-64",
    Path(__file__).resolve().parent / "fixtures" / "fig10-fidelity-t2-48",
)
DEFAULT_RUNGS = "10,13,16"  # cheap clips to epoch 10, then full size; rungs at 10, 13 and 16
FIDELITY_REDUCTION_FACTOR = 4.0
GOAL_FRACTION, GOAL_SEEDS = 0.25, 8
DEFAULT_SWEEP = "2:3,3:3,4:2,4:4,6:3"  # grace:reduction; 2:3 is egotune search's default here


def run_replays(
    curves: RecordedCurves, algorithm: str, seeds: int, args: argparse.Namespace, **asha: Any
) -> list[ReplayOutcome]:
    outcomes = []
    for seed in range(seeds):
        settings = ReplaySettings(
            algorithm,
            seed=seed,
            max_concurrent=args.max_concurrent,
            tolerance=args.tolerance,
            **(asha if "asha" in algorithm else {}),
        )
        outcome = replay_search(curves, settings)
        outcomes.append(outcome)
        print(  # progress: a full run takes minutes
            f"{algorithm} {asha if 'asha' in algorithm else ''} seed {seed}: "
            f"{outcome.epochs} epochs, to target "
            f"{outcome.epochs_to_target}, best {outcome.best:.2f}",
            file=sys.stderr,
            flush=True,
        )
    return outcomes


def summarize(outcomes: Sequence[ReplayOutcome]) -> dict[str, Any]:
    """Per scheduler: seeds that reached the target, and how much they spent."""
    reached = [o for o in outcomes if o.epochs_to_target is not None]
    fractions = [o.fraction_to_target for o in reached if o.fraction_to_target is not None]
    return {
        "seeds": len(outcomes),
        "reached": len(reached),
        "within_goal": sum(1 for f in fractions if f <= GOAL_FRACTION),
        "median_fraction_to_target": statistics.median(fractions) if fractions else None,
        "mean_epochs_to_target": statistics.mean(o.epochs_to_target or 0 for o in reached)
        if reached
        else None,
        "mean_fraction_consumed": statistics.mean(o.fraction_consumed for o in outcomes),
        "mean_best": statistics.mean(o.best for o in outcomes),
        "worst_best": min(o.best for o in outcomes),
    }


def parse_sweep(text: str) -> list[tuple[int, float]]:
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        grace, _, factor = item.partition(":")
        pairs.append((int(grace), float(factor)))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", nargs="?", help="experiment (default: the fixture)")
    parser.add_argument("--storage", type=Path, help="results folder holding EXP")
    parser.add_argument("--seeds", type=int, default=10, help="seeds per scheduler (10)")
    parser.add_argument("--schedulers", default=",".join(REPLAYABLE), help="comma-separated")
    parser.add_argument("--grace-period", type=int, default=4, help="ASHA (4, see above)")
    parser.add_argument("--reduction-factor", type=float, help="ASHA (3; a fidelity schedule's: 4)")
    parser.add_argument(
        "--asha-sweep",
        default=DEFAULT_SWEEP,
        help=f"more ASHA pairs ({DEFAULT_SWEEP}; '' for none)",
    )
    parser.add_argument("--max-concurrent", type=int, default=4, help="trials at once (4)")
    parser.add_argument("--tolerance", type=float, default=1.0, help="points from the best (1)")
    parser.add_argument(
        "--fidelity",
        nargs="?",
        const=str(FIDELITY_FIXTURES[1]),
        metavar="LOW_EXP",
        help="replay a fidelity schedule with LOW_EXP as the cheap recording",
    )
    parser.add_argument(
        "--rungs",
        default=DEFAULT_RUNGS,
        help=f"fidelity: rung epochs, cheap clips up to the first ({DEFAULT_RUNGS})",
    )
    parser.add_argument(
        "--train-clips",
        type=int,
        default=144,
        help="fidelity: training clips per epoch where a recording has no flops column (144)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-record", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    if args.fidelity is not None:
        args.reduction_factor = args.reduction_factor or FIDELITY_REDUCTION_FACTOR
        return fidelity_main(args)
    args.experiment = args.experiment or str(FIXTURE)
    args.reduction_factor = args.reduction_factor or 3.0

    curves = load_recorded(args.experiment, args.storage)
    asha = {"grace_period": args.grace_period, "reduction_factor": args.reduction_factor}
    start = time.perf_counter()
    runs: dict[str, list[ReplayOutcome]] = {}
    for algorithm in filter(None, args.schedulers.split(",")):
        runs[algorithm] = run_replays(curves, algorithm, args.seeds, args, **asha)
    for grace, factor in parse_sweep(args.asha_sweep):
        label = f"asha g={grace} rf={factor:g}"
        runs[label] = run_replays(
            curves, "asha", args.seeds, args, grace_period=grace, reduction_factor=factor
        )
    summaries = {name: summarize(outcomes) for name, outcomes in runs.items()}
    details = {
        "experiment": str(args.experiment),
        "grid": {
            "trials": len(curves.curves),
            "epochs": curves.total_epochs,
            "best": curves.best,
            "target": curves.target(args.tolerance),
            "searched_over": list(curves.keys) if curves.factorial else ["recorded_trial"],
        },
        "args": vars(args) | {"storage": str(args.storage) if args.storage else None},
        "seconds": time.perf_counter() - start,
        "summaries": summaries,
        "runs": {name: [o.to_dict() for o in outcomes] for name, outcomes in runs.items()},
    }
    figures = headline(summaries, curves)
    if not args.no_record:
        record("replay_efficiency", figures, details=details)
    print(json.dumps(details, indent=2) if args.json else table(summaries, curves, args))
    return 0


def fidelity_main(args: argparse.Namespace) -> int:
    """``--fidelity``: the schedule, ASHA at defaults and Optuna+ASHA, scored in FLOPs and in
    the noise band (:mod:`bench.fidelity_replay`)."""
    from bench.fidelity_replay import GOAL_SEEDS, epoch_costs, score, summarize_scores
    from tuner.results import load_experiment
    from tuner.tune.replay import stitch_fidelities

    high_path = args.experiment or str(FIDELITY_FIXTURES[0])
    high, low = load_recorded(high_path, args.storage), load_recorded(args.fidelity, args.storage)
    full = load_experiment(high_path, args.storage)
    cheap = load_experiment(args.fidelity, args.storage)
    rungs = tuple(int(e) for e in args.rungs.split(",") if e.strip())
    stitched = stitch_fidelities(low, high, rungs[0])
    costs = epoch_costs([full, cheap], args.train_clips)
    shared_units = {unit for units in high.units.values() for unit in units}
    grid_flops = len(shared_units) * costs.per_epoch[full.name]
    same = {"rungs": rungs, "reduction_factor": args.reduction_factor}
    plans = {
        f"fidelity rungs {args.rungs}": (stitched, same),
        "same rungs, full size": (high, same),
        "asha (defaults)": (high, {}),
        "optuna+asha (defaults)": (high, {}),
    }
    start = time.perf_counter()
    scores: dict[str, list[Any]] = {}
    for name, (curves, extra) in plans.items():
        algorithm = "optuna+asha" if name.startswith("optuna") else "asha"
        shares = not algorithm.startswith("optuna")  # Optuna's trials share no prefixes
        scores[name] = [
            score(outcome, curves, costs, full, grid_flops, shares=shares)
            for outcome in run_replays(curves, algorithm, args.seeds, args, **extra)
        ]
        for scored in scores[name]:
            print(
                f"{name} seed {scored.seed}: {scored.fraction:.1%} of the grid's FLOPs, found "
                f"{scored.found} epoch {scored.found_epoch} ({scored.found_value}), "
                f"p = {scored.p_value}",
                file=sys.stderr,
                flush=True,
            )
    summaries = {name: summarize_scores(runs) for name, runs in scores.items()}
    fidelity = next(iter(summaries.values()))
    details = {
        "experiments": {"full": str(high_path), "cheap": str(args.fidelity)},
        "rungs": list(rungs),
        "epoch_flops": costs.per_epoch,
        "epoch_flops_from": costs.how,
        "grid_flops_with_sharing": grid_flops,
        "grid_epochs_with_sharing": len(shared_units),
        "args": vars(args) | {"storage": str(args.storage) if args.storage else None},
        "seconds": time.perf_counter() - start,
        "summaries": summaries,
        "runs": {
            name: [vars(s) | {"within_band": s.within_band} for s in runs]
            for name, runs in scores.items()
        },
    }
    figures = {
        name.replace(" ", "_"): f"{s['within_band']}/{s['seeds']} in band, median "
        f"{s['median_fraction']:.0%} of the FLOPs, {s['meets_goal']} meet both"
        for name, s in summaries.items()
    }
    figures["fidelity_goal"] = (
        "met" if fidelity["meets_goal"] >= GOAL_SEEDS * args.seeds / 10 else "missed"
    )
    if not args.no_record:
        record("replay_efficiency", figures, details=details)
    if args.json:
        print(json.dumps(details, indent=2, default=str))
        return 0
    print(
        f"{stitched.experiment}: {len(high.curves)} trials; the full-size grid with prefix "
        f"sharing trains {len(shared_units)} epochs, {grid_flops / 1e12:.1f} TFLOP"
    )
    print(f"epoch FLOPs: {costs.how}")
    print(f"{'scheduler':<24} {'in band':>7} {'<=25%':>6} {'both':>5} {'median':>7} {'max':>6}")
    for name, s in summaries.items():
        print(
            f"{name:<24} {s['within_band']:>4}/{s['seeds']:<2} {s['within_budget']:>6} "
            f"{s['meets_goal']:>5} {s['median_fraction']:>7.1%} {s['max_fraction']:>6.1%}"
        )
    return 0


def headline(summaries: dict[str, dict[str, Any]], curves: RecordedCurves) -> dict[str, Any]:
    figures: dict[str, Any] = {"grid_best": round(curves.best, 2)}
    for name, s in summaries.items():
        median = s["median_fraction_to_target"]
        shown = "-" if median is None else f"{median:.0%}"
        figures[name.replace(" ", "_")] = (
            f"{s['reached']}/{s['seeds']} reached, {s['within_goal']} within 25%, median {shown}"
        )
    if "asha" in summaries:
        met = summaries["asha"]["within_goal"] >= GOAL_SEEDS * summaries["asha"]["seeds"] / 10
        figures["asha_goal"] = "met" if met else "missed"
    return figures


def table(
    summaries: dict[str, dict[str, Any]], curves: RecordedCurves, args: argparse.Namespace
) -> str:
    lines = [
        f"{curves.experiment}: {len(curves.curves)} trials, {curves.total_epochs} epochs, best "
        f"{curves.metric} {curves.best:.2f}, target {curves.target(args.tolerance):.2f}",
        f"{'scheduler':<18} {'reached':>7} {'<=25%':>5} {'median':>7} {'consumed':>8} "
        f"{'mean best':>9} {'worst best':>10}",
    ]
    for name, s in summaries.items():
        median = s["median_fraction_to_target"]
        lines.append(
            f"{name:<18} {s['reached']:>4}/{s['seeds']:<2} {s['within_goal']:>5} "
            f"{'-' if median is None else f'{median:.1%}':>7} "
            f"{s['mean_fraction_consumed']:>8.1%} {s['mean_best']:>9.2f} {s['worst_best']:>10.2f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
