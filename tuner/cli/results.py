"""``egotune results``: query, compare and plot experiments from their Parquet tables.

Subcommands: ``list``, ``top``, ``pivot``, ``curves``, ``importance``, ``parallel``, ``compare``
and ``export``; each prints a text table, or JSON with ``--json``. EXP is an experiment name under
the storage folder (``--storage``, else ``$EGOTUNE_STORAGE``, else ``~/egotune-results``) or the
path of an experiment folder. Nothing here imports ray or torch, so the commands answer quickly,
also while a search is running.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner.cli._names import storage_location
from tuner.cli._text_table import cell_text, text_table
from tuner.cli.results_stats import (
    add_stats_commands,
    compare_trials_command,
    is_trial_comparison,
)
from tuner.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

    from tuner import results
else:  # imported by the first handler that uses them, not to build the parser
    from tuner.cli._lazy import LazyModule

    pd, results = LazyModule("pandas"), LazyModule("tuner.results")

LEVEL = 0.95
"""``tuner.results.LEVEL``, the default ``--level``, without importing the results package to build
the parser (a test holds them equal)."""

__all__ = ["register"]

_VALUE_HELP = "trial column to rank by (default: best_val_acc, in percent)"


def register(subparsers: Any) -> None:
    group = subparsers.add_parser(
        "results",
        help="query, compare and plot experiments",
        description="Query, compare and plot the results tables of experiments.",
    )
    commands = group.add_subparsers(dest="results_command", metavar="SUBCOMMAND", required=True)
    for add in (_add_list, _add_top, _add_pivot, _add_curves, _add_importance):
        add(commands)
    for add in (_add_parallel, _add_compare, _add_export):
        add(commands)
    add_stats_commands(commands, _command)


def _command(
    commands: Any, name: str, help_: str, handler: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=help_, description=help_)
    parser.add_argument(
        "--storage",
        type=storage_location,
        help="results folder or bucket URI, e.g. s3://bucket/prefix (default: $EGOTUNE_STORAGE "
        "or ~/egotune-results)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=handler)
    return parser


def _add_list(commands: Any) -> None:
    _command(commands, "list", "each experiment: space, trials by status, best, dates", _list)


def _add_top(commands: Any) -> None:
    parser = _command(commands, "top", "the best configurations, seeds grouped", _top)
    parser.add_argument("experiment", metavar="EXP", help="experiment name or folder")
    parser.add_argument("-k", type=int, default=5, help="how many (default 5)")
    parser.add_argument("--value", default="best_val_acc", help=_VALUE_HELP)
    parser.add_argument(
        "--no-group", action="store_true", help="one row per trial instead of per configuration"
    )


def _add_pivot(commands: Any) -> None:
    parser = _command(commands, "pivot", "a table like the report's Fig. 10 and Fig. 11", _pivot)
    parser.add_argument("experiment", metavar="EXP", help="experiment name or folder")
    parser.add_argument("--rows", required=True, help="comma-separated row columns")
    parser.add_argument("--cols", default="", help="comma-separated column columns")
    parser.add_argument("--value", default="best_val_acc", help="cell value (default best_val_acc)")
    parser.add_argument("--agg", choices=("mean", "max"), default="mean", help="over repeats")
    parser.add_argument("--csv", type=Path, metavar="PATH", help="also save as CSV")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also save as Markdown")
    parser.add_argument("--out", type=Path, metavar="FILE.png", help="also draw a heatmap")
    parser.add_argument(
        "--significance",
        action="store_true",
        help="mark cells not distinguishable from the best trial (paired tests, Holm)",
    )
    parser.add_argument("--level", type=float, default=LEVEL, help="test level")
    parser.add_argument(
        "--std", action="store_true", help="cells as mean ± std over repeats (folds: default)"
    )


def _add_curves(commands: Any) -> None:
    parser = _command(commands, "curves", "accuracy and loss by epoch, LR phases marked", _curves)
    parser.add_argument("experiment", metavar="EXP", help="experiment name or folder")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--trials", metavar="IDS", help="comma-separated trial ids")
    which.add_argument("--top", type=int, metavar="K", help="the K best trials (default 1)")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.png", help="PNG to write")


def _add_importance(commands: Any) -> None:
    parser = _command(commands, "importance", "hyperparameter importance (Optuna)", _importance)
    parser.add_argument("experiment", metavar="EXP", help="experiment name or folder")
    parser.add_argument("--value", default="best_val_acc", help=_VALUE_HELP)
    parser.add_argument(
        "--evaluator",
        choices=("ped-anova", "fanova"),
        default="ped-anova",
        help="Optuna importance evaluator (fanova needs scikit-learn)",
    )
    parser.add_argument("--out", type=Path, metavar="FILE.png", help="also write a bar plot")


def _add_parallel(commands: Any) -> None:
    parser = _command(commands, "parallel", "parallel coordinates of the trials", _parallel)
    parser.add_argument("experiment", metavar="EXP", help="experiment name or folder")
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE", help="FILE.png or FILE.html"
    )
    parser.add_argument("--value", default="best_val_acc", help="color of the lines")
    parser.add_argument("--params", help="comma-separated columns (default: those that vary)")


def _add_compare(commands: Any) -> None:
    parser = _command(
        commands, "compare", "two experiments side by side, or two trials on the same videos",
        _compare,
    )  # fmt: skip
    parser.add_argument(
        "experiments",
        nargs="+",
        metavar="ITEM",
        help="EXP1 EXP2 (experiments), EXP A B (two of its trials) or EXP:A EXP2:B",
    )
    parser.add_argument("--value", default="best_val_acc", help=_VALUE_HELP)
    parser.add_argument("--epoch", default="best", help="trials: best (default), last or N")
    parser.add_argument("--level", type=float, default=LEVEL, help="interval level")


def _add_export(commands: Any) -> None:
    parser = _command(commands, "export", "write the trials (or epochs) table", _export)
    parser.add_argument("experiment", metavar="EXP", help="experiment name or folder")
    parser.add_argument("--format", choices=("csv", "parquet"), required=True)
    parser.add_argument("--out", type=Path, required=True, metavar="PATH")
    parser.add_argument("--epochs", action="store_true", help="the epochs table instead")


# -- handlers -------------------------------------------------------------------------------


def _load(args: argparse.Namespace, name: str) -> results.Experiment:
    return results.load_experiment(name, args.storage)


def _list(args: argparse.Namespace) -> int:
    table = results.list_experiments(args.storage)
    if args.json:
        return _print_json(_records(table))
    if table.empty:
        print(f"no experiments in {args.storage or results.default_storage()}")
        return 0
    table["status"] = table["status"].map(lambda c: ", ".join(f"{k} {v}" for k, v in c.items()))
    print(_text(table))
    return 0


def _top(args: argparse.Namespace) -> int:
    experiment = _load(args, args.experiment)
    _check_columns(experiment.trials, [args.value], "--value")
    if args.k < 1:
        raise UsageError(f"-k {args.k}: must be 1 or more")
    table = results.top_trials(experiment.trials, args.k, args.value, group=not args.no_group)
    if not args.no_group and not table.empty:
        table = results.seed_intervals(table)  # a t interval of the mean over seeds or folds
    if args.json:
        return _print_json(_records(table))
    if table.empty:
        print(f"{experiment.name}: no trial has {args.value} yet")
        return 0
    view = _top_view(table, experiment.trials, args.value, grouped=not args.no_group)
    print(_text(view, params=results.hyperparameter_columns(experiment.trials)))
    return 0


def _top_view(
    table: pd.DataFrame, trials: pd.DataFrame, value: str, *, grouped: bool
) -> pd.DataFrame:
    """The varying hyperparameters and the value (mean ± std (n) when grouped)."""
    shown = results.varying_columns(trials)
    if not grouped:
        return table[["trial_id", *shown, value, "epochs_run"]]
    view = table[[c for c in shown if c in table.columns and c != "seed"]].copy()
    view[value] = [
        _mean_std(m, s, n) for m, s, n in zip(table["mean"], table["std"], table["n"], strict=True)
    ]
    view[f"{100 * results.LEVEL:g} % CI"] = [
        "-" if pd.isna(lo) else f"[{lo:.2f}, {hi:.2f}]"
        for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)
    ]
    view["best"] = table["best"]
    view["seeds"] = table["seeds"].map(lambda seeds: len(set(seeds)))  # how many, not which
    view["epochs_run"] = table["epochs_run"]
    return view


def _mean_std(mean: float, std: float, n: int) -> str:
    spread = "" if pd.isna(std) else f" ± {std:.2f}"
    return f"{mean:.2f}{spread} (n={n})"


def _pivot(args: argparse.Namespace) -> int:
    experiment = _load(args, args.experiment)
    rows, cols = _names(args.rows), _names(args.cols)
    if not rows:
        raise UsageError("--rows: name at least one column")
    _check_columns(experiment.trials, rows, "--rows")
    _check_columns(experiment.trials, cols, "--cols")
    _check_columns(experiment.trials, [args.value], "--value")
    if args.out is not None and args.out.suffix.lower() != ".png":
        raise UsageError(f"--out {args.out}: the heatmap is written as .png")
    table = results.pivot_table(experiment.trials, rows, cols, args.value, args.agg)
    marks = _marks(experiment, rows, cols, args) if args.significance else None
    spread = args.std or _cross_validated(experiment.trials)
    shown = _display_pivot(table, marks, _spread(experiment, rows, cols, args) if spread else None)
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(_markdown(shown.reset_index()), encoding="utf-8")
    if args.out is not None:
        results.plot_pivot(
            experiment, rows, cols, args.out, value=args.value, agg=args.agg,
            significance=args.significance, level=args.level,
        )  # fmt: skip
    if args.json:
        flat = table.copy()
        flat.columns = [_column_label(c) for c in flat.columns]
        payload = _records(flat.reset_index())
        if marks is not None:
            tied = marks.reindex(index=table.index, columns=table.columns, fill_value=False)
            for record, flags in zip(payload, tied.to_numpy().tolist(), strict=True):
                record["not_distinguishable"] = {
                    _column_label(c): bool(f) for c, f in zip(table.columns, flags, strict=True)
                }
        return _print_json(payload)
    print(f"{args.agg} {args.value} by {', '.join(rows)}" + (f" / {', '.join(cols)}" * bool(cols)))
    print(shown.to_string())
    if marks is not None:
        print(f"= : not distinguishable from the best trial (exact McNemar on the same videos, "
              f"Holm-corrected, {1 - args.level:g})")  # fmt: skip
    if args.out is not None:
        print(f"wrote {args.out}")
    return 0


def _marks(
    experiment: results.Experiment, rows: list[str], cols: list[str], args: argparse.Namespace
) -> pd.DataFrame:
    try:
        return results.pivot_marks(experiment, rows, cols, value=args.value, level=args.level)
    except ValueError as exc:
        raise UsageError(f"--significance: {exc}") from None


def _cross_validated(trials: pd.DataFrame) -> bool:
    return "val_users" in trials.columns and trials["val_users"].astype(str).nunique() > 1


def _spread(
    experiment: results.Experiment, rows: list[str], cols: list[str], args: argparse.Namespace
) -> pd.DataFrame:
    """Sample standard deviation of each cell over its trials (repeated seeds or folds)."""
    return results.pivot_table(experiment.trials, rows, cols, args.value, "std")


def _display_pivot(
    table: pd.DataFrame, marks: pd.DataFrame | None = None, spread: pd.DataFrame | None = None
) -> pd.DataFrame:
    """``table`` with index and column labels as the report prints them and cells to 2 decimals,
    ``± std`` with ``spread`` and ``=`` on the cells ``marks`` flags."""
    shown = table.map(lambda v: "-" if pd.isna(v) else f"{v:.2f}")
    if spread is not None:
        std = spread.reindex(index=table.index, columns=table.columns)
        shown = shown.where(std.isna(), shown + std.map(lambda v: f" ± {v:.2f}"))
    if marks is not None:
        tied = marks.reindex(index=table.index, columns=table.columns, fill_value=False)
        shown = shown.where(~tied.astype(bool), shown + " =")
    shown.index = _format_index(shown.index)
    shown.columns = _format_index(shown.columns)
    return shown


def _format_index(index: pd.Index) -> pd.Index:
    if isinstance(index, pd.MultiIndex):
        levels = [[results.format_number(v) for v in level] for level in index.levels]
        return index.set_levels(levels, verify_integrity=False)
    return pd.Index([results.format_number(v) for v in index], name=index.name)


def _column_label(column: Any) -> str:
    parts = column if isinstance(column, tuple) else (column,)
    return "/".join(results.format_number(p) for p in parts)


def _curves(args: argparse.Namespace) -> int:
    experiment = _load(args, args.experiment)
    if args.top is not None and args.top < 1:
        raise UsageError(f"--top {args.top}: must be 1 or more")
    if args.out.suffix.lower() != ".png":
        raise UsageError(f"--out {args.out}: curves are written as .png")
    try:
        chosen = results.select_trials(experiment, _names(args.trials or ""), args.top)
    except ValueError as exc:
        raise UsageError(f"--trials: {exc}") from None
    path = results.plot_curves(experiment, chosen, args.out)
    if args.json:
        return _print_json({"out": str(path), "trials": chosen})
    print(f"wrote {path} ({len(chosen)} trial{'s' * (len(chosen) > 1)}: {', '.join(chosen)})")
    return 0


def _importance(args: argparse.Namespace) -> int:
    experiment = _load(args, args.experiment)
    _check_columns(experiment.trials, [args.value], "--value")
    importances = results.param_importances(experiment.trials, args.value, evaluator=args.evaluator)
    path = None
    if args.out:
        title = f"{experiment.name}: importance for {args.value} ({args.evaluator})"
        path = results.plot_importances(importances, args.out, title=title)
    if args.json:
        return _print_json(
            {
                "evaluator": args.evaluator,
                "importances": importances.to_dict(),
                "out": path and str(path),
            }
        )
    for name, share in importances.items():
        print(f"{name:<24} {share:6.3f}  {'#' * round(share * 40)}")
    if path:
        print(f"wrote {path}")
    return 0


def _parallel(args: argparse.Namespace) -> int:
    experiment = _load(args, args.experiment)
    if args.out.suffix.lower() not in (".png", ".html", ".htm"):
        raise UsageError(f"--out {args.out}: expected a .png or .html file")
    params = _names(args.params) if args.params else None
    if params is not None:
        _check_columns(experiment.trials, params, "--params")
    _check_columns(experiment.trials, [args.value], "--value")
    path = results.plot_parallel(experiment, args.out, args.value, params)
    if args.json:
        return _print_json({"out": str(path)})
    print(f"wrote {path}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    if not 2 <= len(args.experiments) <= 3:
        raise UsageError("compare: give EXP1 EXP2, EXP A B or EXP:A EXP2:B")
    if is_trial_comparison(args.experiments):
        return compare_trials_command(args)
    experiments = [_load(args, name) for name in args.experiments]
    for experiment in experiments:
        _check_columns(experiment.trials, [args.value], "--value")
    if args.json:
        summaries = [results.summarize_experiment(e, args.value) for e in experiments]
        return _print_json(summaries)
    table = results.compare_experiments(experiments, args.value)
    print(_text(table.drop(index="experiment"), index=True))
    return 0


def _export(args: argparse.Namespace) -> int:
    experiment = _load(args, args.experiment)
    path = results.export_experiment(experiment, args.format, args.out, epochs=args.epochs)
    rows = len(experiment.epochs if args.epochs else experiment.trials)
    if args.json:
        return _print_json({"out": str(path), "rows": rows, "format": args.format})
    print(f"wrote {path} ({rows} rows)")
    return 0


# -- formatting -----------------------------------------------------------------------------


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _check_columns(trials: pd.DataFrame, names: Sequence[str], flag: str) -> None:
    missing = [n for n in names if n not in trials.columns]
    if missing:
        known = ", ".join(results.hyperparameter_columns(trials))
        raise UsageError(f"{flag} {','.join(missing)}: no such trials column (have: {known})")


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (NaN as null, numpy scalars as Python numbers)."""
    records: list[dict[str, Any]] = json.loads(table.to_json(orient="records", double_precision=15))
    return records


def _print_json(payload: Any) -> int:
    print(json.dumps(payload, indent=2, default=str))
    return 0


def _text(table: pd.DataFrame, *, index: bool = False, params: Sequence[str] = ()) -> str:
    """``table`` as aligned text (:func:`text_table`); with ``index``, pandas' layout of the
    index and columns (the compare table)."""
    if not index:
        return text_table(table, params=params)
    shown = table.copy().astype(object)
    for name in shown.columns:
        format_ = results.format_number if name in params else cell_text
        shown[name] = shown[name].map(format_)
    return shown.to_string(index=index)


def _markdown(table: pd.DataFrame) -> str:
    header = [str(c) if not isinstance(c, tuple) else " / ".join(map(str, c)) for c in table]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"
