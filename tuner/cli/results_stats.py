"""``egotune results`` subcommands that read the per-video predictions: ``accuracy`` (intervals),
paired ``compare`` of trials, ``confusion``, ``cam`` (attention maps) and ``folds``; and those
that weigh accuracy against cost: ``pareto`` (the front) and ``recommend`` (the cheapest trial
the videos cannot tell from the best).

Like the rest of ``egotune results`` they import neither ray nor torch, except ``cam``, which
rebuilds the trial's model and reads its videos (torch, loaded when the command runs).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.cli._text_table import text_table
from tuner.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from tuner import results
else:  # imported by the first handler that uses them, not to build the parser
    from tuner.cli._lazy import LazyModule

    pd, results = LazyModule("pandas"), LazyModule("tuner.results")

LEVEL = 0.95  # tuner.results.LEVEL (tuner.cli.results says why it is repeated)

__all__ = ["add_stats_commands", "compare_trials_command", "is_trial_comparison"]


def add_stats_commands(commands: Any, command: Any) -> None:
    """Register the subcommands with ``command(commands, name, help, handler)`` (the parser
    factory of :mod:`tuner.cli.results`, which adds ``--storage`` and ``--json``)."""
    parser = command(
        commands, "accuracy", "each trial's selected-epoch accuracy with its interval", _accuracy
    )
    parser.add_argument("experiment", metavar="EXP", help="experiment name or folder")
    parser.add_argument("--last", type=int, default=5, metavar="K", help="last-K mean (5)")
    parser.add_argument("--level", type=float, default=LEVEL, help="interval level")

    parser = command(commands, "confusion", "a trial's confusion matrix (PNG)", _confusion)
    parser.add_argument("experiment", metavar="EXP", help="experiment name or folder")
    parser.add_argument("trial", metavar="TRIAL", help="trial id, as the tables hold it")
    parser.add_argument("--epoch", default="best", help="best (default), last or a number")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.png", help="PNG to write")

    parser = command(commands, "cam", "CAM attention over a trial's validation videos", _cam)
    parser.add_argument("experiment", metavar="EXP", help="experiment name or folder")
    parser.add_argument("trial", metavar="TRIAL", help="trial id, as the tables hold it")
    parser.add_argument(
        "--video",
        dest="videos",
        action="append",
        metavar="USER/CLASS/INSTANCE",
        help="a validation video (repeatable; class names may hold commas)",
    )
    parser.add_argument("--count", type=int, default=4, help="videos when --video is not given")
    parser.add_argument("--data", type=Path, help="dataset folder (default: the experiment's)")
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="folder of PNGs (default: EXP/cam/TRIAL)"
    )

    parser = command(commands, "pareto", "the accuracy-versus-cost front of the trials", _pareto)
    parser.add_argument("experiment", metavar="EXP", help="experiment name or folder")
    _cost_argument(parser)
    parser.add_argument("--out", type=Path, metavar="FILE.png", help="also draw the front (PNG)")

    parser = command(
        commands, "recommend", "the cheapest trial not significantly below the best", _recommend
    )
    parser.add_argument("experiment", metavar="EXP", help="experiment name or folder")
    _cost_argument(parser)
    parser.add_argument("--level", type=float, default=LEVEL, help="1 - significance level")

    parser = command(commands, "folds", "cross-validation folds: per fold and mean ± std", _folds)
    parser.add_argument("experiment", metavar="EXP", help="experiment name or folder")
    parser.add_argument("--value", default="best_val_acc", help="trial column (best_val_acc)")


def _cost_argument(parser: Any) -> None:
    parser.add_argument(
        "--cost",
        choices=("flops", "gpu_seconds"),
        default="flops",
        help="counted FLOPs (default) or measured GPU-seconds",
    )


def is_trial_comparison(items: list[str]) -> bool:
    """``EXP A B`` (three items) or ``EXP:A EXP2:B`` compare trials; two plain names compare
    experiments."""
    return len(items) == 3 or (len(items) == 2 and all(":" in item for item in items))


def compare_trials_command(args: argparse.Namespace) -> int:
    """``results compare EXP A B`` (or ``EXP:A EXP2:B``): a paired test on the same videos."""
    items = list(args.experiments)
    if len(items) == 3:
        specs = [(items[0], items[1]), _spec(items[2], default=items[0])]
    else:
        specs = [_spec(item, default=None) for item in items]
    loaded = {name: results.load_experiment(name, args.storage) for name, _ in specs}
    outcomes = []
    for name, trial in specs:
        experiment = loaded[name]
        if trial not in set(experiment.trials["trial_id"]):
            raise UsageError(f"{name}: no trial {trial!r}")
        try:
            outcomes.append(results.outcomes(experiment, trial, args.epoch))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    try:
        test = results.compare_trials(*outcomes, level=args.level)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    labels = [f"{name}:{trial}" for name, trial in specs]
    test.update(first=labels[0], second=labels[1], epoch=args.epoch)
    if args.json:
        return _print(test)
    level = f"{100 * args.level:g} %"
    print(f"{labels[0]}: {test['acc_first']:.2f} %   {labels[1]}: {test['acc_second']:.2f} %")
    print(
        f"difference {test['difference']:+.2f} points, {level} bootstrap interval "
        f"[{test['ci_low']:+.2f}, {test['ci_high']:+.2f}] over {test['videos']} videos"
    )
    print(
        f"discordant videos: {test['only_first_right']} only the first right, "
        f"{test['only_second_right']} only the second; exact McNemar p = {test['p_value']:.4g}"
    )
    return 0


def _spec(item: str, default: str | None) -> tuple[str, str]:
    name, sep, trial = item.rpartition(":")
    if sep:
        return name, trial
    if default is None:
        raise UsageError(f"{item}: give trials as EXP:TRIAL (or EXP A B)")
    return default, item


def _accuracy(args: argparse.Namespace) -> int:
    experiment = results.load_experiment(args.experiment, args.storage)
    if not 0 < args.level < 1:
        raise UsageError(f"--level {args.level}: must be between 0 and 1")
    try:
        table = results.trial_accuracies(experiment, last_k=args.last, level=args.level)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        return _print(_records(table))
    if table.empty:
        print(f"{experiment.name}: no trial has a selected epoch yet")
        return 0
    shown = table.drop(columns=["ci_low", "ci_high"]).copy()
    shown.insert(
        shown.columns.get_loc("acc") + 1,
        f"{100 * args.level:g} % interval",
        [_interval(lo, hi) for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)],
    )
    shown = shown.rename(columns={"last_k_mean": f"last {args.last} mean"})
    print(text_table(shown, params=results.hyperparameter_columns(experiment.trials)))
    videos = int(table["videos"].max())
    if videos:
        print(f"one video is {100 / videos:.2f} points; the selected epoch is chosen on the same "
              "videos, so its accuracy is optimistic (compare the last-epoch columns)")  # fmt: skip
    return 0


def _interval(low: float, high: float) -> str:
    return "-" if pd.isna(low) else f"[{low:.1f}, {high:.1f}]"


def _confusion(args: argparse.Namespace) -> int:
    experiment = results.load_experiment(args.experiment, args.storage)
    if args.out.suffix.lower() != ".png":
        raise UsageError(f"--out {args.out}: the confusion matrix is written as .png")
    try:
        found = results.plot_confusion(experiment, args.trial, args.out, args.epoch)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    per_class = found["per_class"].reset_index()
    if args.json:
        return _print(
            {
                "trial_id": args.trial,
                "epoch": found["epoch"],
                "acc": found["acc"],
                "videos": found["videos"],
                "classes": found["classes"],
                "matrix": found["matrix"].to_numpy().tolist(),
                "per_class": _records(per_class),
                "confused_pairs": found["confused_pairs"],
                "out": str(args.out),
            }
        )
    print(f"wrote {args.out}: epoch {found['epoch']}, {found['acc']:.2f} % of {found['videos']}")
    worst = per_class.head(5)
    print("lowest per-class accuracy: " + ", ".join(
        f"{row.true_class} {row.acc:.0f} % ({row.videos})" for row in worst.itertuples()
    ))  # fmt: skip
    pairs = found["confused_pairs"][:5]
    if pairs:
        print("most confused: " + ", ".join(f"{p['true']} -> {p['pred']} ({p['videos']})"
                                             for p in pairs))  # fmt: skip
    return 0


def _cam(args: argparse.Namespace) -> int:
    from tuner.training.cam import write_cam_strips

    experiment = results.load_experiment(args.experiment, args.storage)
    if args.count < 1:
        raise UsageError(f"--count {args.count}: must be 1 or more")
    videos = [v.strip() for v in args.videos or () if v.strip()] or None
    out = args.out or experiment.path / results.CAM_DIR / args.trial
    written = write_cam_strips(
        experiment, args.trial, out, videos=videos, count=args.count, data=args.data
    )
    if args.json:
        return _print({"out": [str(p) for p in written]})
    for path in written:
        print(f"wrote {path}")
    return 0


def _folds(args: argparse.Namespace) -> int:
    experiment = results.load_experiment(args.experiment, args.storage)
    try:
        per_fold, summary = results.fold_table(experiment.trials, args.value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        return _print({"folds": _records(per_fold.reset_index()), "summary": _records(summary)})
    params = results.hyperparameter_columns(experiment.trials)
    print(text_table(per_fold.reset_index(), params=params))
    print()
    print(text_table(summary, params=params))
    return 0


def _pareto(args: argparse.Namespace) -> int:
    experiment = results.load_experiment(args.experiment, args.storage)
    if args.out is not None and args.out.suffix.lower() != ".png":
        raise UsageError(f"--out {args.out}: the front is drawn as .png")
    frame = results.pareto_front(experiment, args.cost)
    if frame["cost"].isna().all():
        raise UsageError(
            f"{experiment.name}: no trial has a {args.cost} figure (searches from before costs "
            "were counted have none; CPU trials have no GPU-seconds)"
        )
    if args.out is not None:
        try:
            results.plot_pareto(experiment, args.out, args.cost)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.json:
        return _print(
            {
                "cost": args.cost,
                "trials": _records(frame),
                "out": str(args.out) if args.out is not None else None,
            }
        )
    front = frame[frame["on_front"]].drop(columns=["on_front"])
    shown = front.rename(columns={"cost": args.cost})
    shown[args.cost] = front["cost"].map(lambda v: results.format_cost(args.cost, v))
    label = results.cost_label(args.cost)
    print(
        f"{experiment.name}: {len(front)} of {len(frame)} trials on the accuracy-versus-{label} "
        "front (no other trial is as accurate for less)"
    )
    print(text_table(shown, params=results.hyperparameter_columns(experiment.trials)))
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0


def _recommend(args: argparse.Namespace) -> int:
    experiment = results.load_experiment(args.experiment, args.storage)
    if not 0 < args.level < 1:
        raise UsageError(f"--level {args.level}: must be between 0 and 1")
    try:
        found = results.recommend(experiment, args.cost, level=args.level)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        return _print(found)
    for line in recommendation_text(found):
        print(line)
    return 0


def recommendation_text(found: dict[str, Any]) -> list[str]:
    """The recommendation in words: the best, the pick, the test, the saving."""
    cost = found["cost"]
    best, pick = found["best"], found["recommended"]
    alpha = 1 - found["level"]

    def config(row: dict[str, Any]) -> str:
        shown = {k: v for k, v in row.items() if k not in ("trial_id", "acc", "epoch", "cost")}
        values = ", ".join(f"{k}={results.format_number(v)}" for k, v in shown.items())
        return f"{row['trial_id']} ({values})" if values else row["trial_id"]

    lines = [
        f"best:        {config(best)}: {best['acc']:.2f} % at epoch {best['epoch']}, "
        f"{results.format_cost(cost, best['cost'])}"
    ]
    if found["same_trial"]:
        lines.append(
            f"recommended: the best itself; none of the {found['tied'] - 1} other trials the "
            f"{found['videos']} validation videos cannot tell from it costs less"
            + (
                f" (the {found['stopped']} the scheduler stopped early are not candidates)"
                if found["stopped"]
                else ""
            )
        )
        return lines
    lines.append(
        f"recommended: {config(pick)}: {pick['acc']:.2f} % at epoch {pick['epoch']}, "
        f"{results.format_cost(cost, pick['cost'])}"
    )
    lines.append(
        f"on the {found['videos']} validation videos the best alone is right on "
        f"{found['only_best_right']}, the recommendation alone on "
        f"{found['only_recommended_right']}: exact McNemar p = {found['p_value']:.3g}, "
        f"{found['p_holm']:.3g} after Holm's correction over {found['compared'] - 1} "
        f"comparisons with the best, so the difference of "
        f"{best['acc'] - pick['acc']:.2f} points is within the noise (p >= {alpha:g})"
    )
    lines.append(
        f"saving: {100 * found['saving']:.0f} % of the best's {results.cost_label(cost)} "
        f"({found['tied']} of {found['compared']} trials are not significantly below the best"
        + (
            f"; the {found['stopped']} the scheduler stopped early are not candidates)"
            if found["stopped"]
            else ")"
        )
    )
    return lines


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    import json

    records: list[dict[str, Any]] = json.loads(table.to_json(orient="records", double_precision=15))
    return records


def _print(payload: Any) -> int:
    import json

    print(json.dumps(payload, indent=2, default=str))
    return 0
