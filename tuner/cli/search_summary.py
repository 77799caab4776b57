"""What ``egotune search`` and ``egotune demo`` print when a search ends.

The best trials, the Fig. 10-style table of the grid (rows: every varying hyperparameter but the
last; columns: the last), where the Parquet tables are and the commands that look at them next;
or all of it as one JSON object (``--json``). A local Ray stops with the command, so its
dashboard is not offered here; a cluster's is.
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["egotune_command", "print_search_summary", "resume_command", "search_summary"]

_TOP = 5


def search_summary(
    experiment_dir: Path,
    space: Any,
    *,
    storage_flag: Path | str | None,
    seconds: float,
    num_errors: int,
    chance: float | None = None,
    dashboard_url: str | None = None,
) -> dict[str, Any]:
    """The end-of-search report as a JSON-ready dict.

    ``storage_flag``: the ``--storage`` the next commands need (``None`` for the default
    folder); ``chance``: the accuracy of guessing, in percent, when the caller knows it.
    """
    from tuner import results

    experiment = results.load_experiment(experiment_dir)
    trials = experiment.trials
    value = "best_val_acc"
    keys = [key for key in space.varying_keys if key in trials.columns]
    ranked = trials.dropna(subset=[value]) if value in trials.columns else trials.iloc[0:0]
    ranked = ranked.sort_values(value, ascending=False, kind="stable")
    shown = ["trial_id", *keys, value, "best_epoch", "epochs_run"]
    top = [_row(record, shown) for record in ranked.head(_TOP).to_dict("records")]
    best = top[0] if top else None
    return {
        "experiment": experiment_dir.name,
        "folder": str(experiment_dir),
        "tables": {
            "trials": str(experiment_dir / results.TRIALS_FILE),
            "epochs": str(experiment_dir / results.EPOCHS_DIR),
        },
        "trials": len(trials),
        "errors": int(num_errors),
        "seconds": round(seconds, 1),
        "metric": space.scheduler.metric,
        "mode": space.scheduler.mode,
        "value": value,
        "best": best,
        "chance": chance,
        "top": top,
        "pivot": _pivot(trials, space, value),
        "next": _next_commands(experiment_dir.name, space, storage_flag),
        "dashboard": dashboard_url,
        "storage_fault": storage_fault(experiment_dir, storage_flag) if num_errors else None,
    }


_STORAGE_FAULTS = {
    "No space left on device": "free space on its disk or choose another --storage",
    "Disk quota exceeded": "free space on its disk or choose another --storage",
    "Read-only file system": "fix the folder's permissions or choose another --storage",
    "Permission denied": "fix the folder's permissions or choose another --storage",
}


def storage_fault(experiment_dir: Path, storage_flag: Path | str | None = None) -> str | None:
    """One line naming ``experiment_dir`` and what to do when a trial failed because it could
    not write there (its ``error.txt`` from Tune names a full disk or a refused write; PyTorch
    adds ``inline_container.cc ... unexpected pos`` to a checkpoint cut short)."""
    failed = []
    for path in sorted(experiment_dir.glob("*/error.txt")):
        text = path.read_text(encoding="utf-8", errors="replace")
        failed += [reason for reason in _STORAGE_FAULTS if reason in text][:1]
    if not failed:
        return None
    reason = max(set(failed), key=failed.count)
    return (
        f"{experiment_dir}: {len(failed)} trial(s) failed writing there ({reason}); "
        f"{_STORAGE_FAULTS[reason]}, then {resume_command(experiment_dir.name, storage_flag)}"
    )


def _row(record: dict[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    return {column: _plain(record.get(column)) for column in columns}


def _plain(value: Any) -> Any:
    """A numpy or pandas scalar as a JSON value (NaN as ``None``, arrays as lists)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _pivot_axes(space: Any) -> tuple[list[str], list[str]] | None:
    """Rows and columns of the Fig. 10 layout, or ``None`` when a pivot would not mean much
    (sampled values, fewer than two grid axes)."""
    keys = [key for key in space.varying_keys if key != "seed"]
    if space.sample or len(keys) < 2:
        return None
    return keys[:-1], keys[-1:]


def _pivot(trials: Any, space: Any, value: str) -> dict[str, Any] | None:
    from tuner import results

    axes = _pivot_axes(space)
    if axes is None or trials.empty or value not in trials.columns:
        return None
    rows, cols = axes
    if not all(key in trials.columns for key in (*rows, *cols)):
        return None
    table = results.pivot_table(trials, rows, cols, value)
    cells = []
    for index, line in table.iterrows():
        labels = index if isinstance(index, tuple) else (index,)
        for column, cell in line.items():
            where = dict(zip(rows, labels, strict=True))
            where[cols[0]] = column
            cells.append({**{k: _plain(v) for k, v in where.items()}, value: _plain(cell)})
    return {"rows": rows, "cols": cols, "value": value, "cells": cells}


def egotune_command() -> str:
    """How the user's shell starts this egotune: ``egotune`` when the PATH finds it, else the
    path of the running script (``.venv/bin/egotune`` after ``make setup`` in a shell that has not
    activated the environment), else ``python -m tuner.cli`` with this interpreter."""
    running = _running_script()
    found = shutil.which("egotune")
    if found is not None and (running is None or Path(found).resolve() == running.resolve()):
        return "egotune"
    if running is None:
        return shlex.join([_shown_path(Path(sys.executable)), "-m", "tuner.cli"])
    return shlex.quote(_shown_path(running))


def _running_script() -> Path | None:
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name == "egotune" and script.is_file():
        return script
    beside = Path(sys.executable).with_name("egotune")
    return beside if beside.is_file() else None


def _shown_path(path: Path) -> str:
    """``path`` relative to the working folder when it lies below it, else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def resume_command(name: str, storage_flag: Path | str | None) -> str:
    """The command that continues an interrupted or killed search."""
    storage = ["--storage", str(storage_flag)] if storage_flag is not None else []
    return f"{egotune_command()} {shlex.join(['search', '--resume', name, *storage])}"


def _next_commands(name: str, space: Any, storage_flag: Path | str | None) -> list[str]:
    storage = ["--storage", str(storage_flag)] if storage_flag is not None else []
    commands = [
        ["results", "top", name, *storage],
        [
            "results",
            "curves",
            name,
            "--top",
            "3",
            "--out",
            f"{name}-curves.png",
            *storage,
        ],
    ]
    axes = _pivot_axes(space)
    if axes is not None:
        rows, cols = axes
        pivot = ["--rows", ",".join(rows), "--cols", ",".join(cols)]
        commands.insert(1, ["results", "pivot", name, *pivot, *storage])
    commands.append(["ui", *storage])
    word = egotune_command()
    return [f"{word} {shlex.join(command)}" for command in commands]


# -- text ---------------------------------------------------------------------------------------


def print_search_summary(summary: dict[str, Any]) -> None:
    """The report of :func:`search_summary` as text on stdout."""
    errors = f", {summary['errors']} failed" if summary["errors"] else ""
    print(
        f"\nSearch {summary['experiment']} finished: {summary['trials']} trials{errors} in "
        f"{_duration(summary['seconds'])}."
    )
    if summary.get("storage_fault"):
        print(f"egotune: error: {summary['storage_fault']}", file=sys.stderr, flush=True)
    if summary["top"]:
        print(f"\nBest {len(summary['top'])} trials by best validation accuracy (%):")
        print(_table(summary["top"]))
    if summary["pivot"] is not None:
        pivot = summary["pivot"]
        print(
            f"\nBest validation accuracy (%) by configuration, the report's Fig. 10 layout "
            f"(rows {', '.join(pivot['rows'])}; columns {', '.join(pivot['cols'])}):"
        )
        print(_pivot_text(pivot))
    if summary["chance"] and summary["best"] and summary["best"]["best_val_acc"] is not None:
        ratio = summary["best"]["best_val_acc"] / summary["chance"]
        print(
            f"\nGuessing scores {summary['chance']:.1f} %; "
            f"the best trial reached {ratio:.1f}x that."
        )
    print("\nResults (Parquet tables):")
    print(f"  trials  {summary['tables']['trials']}")
    print(f"  epochs  {summary['tables']['epochs']}/")
    print("Next:")
    for command in summary["next"]:
        print(f"  {command}")
    if summary["dashboard"]:
        print(f"Ray dashboard of the cluster: {summary['dashboard']}")


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _table(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0])
    cells = [[column.replace("_", " ") for column in columns]]
    cells += [[_hyper(row, column) for column in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  " + "  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in cells
    )


def _hyper(row: dict[str, Any], column: str) -> str:
    from tuner.results import format_number

    value = row[column]
    if column in ("best_val_acc",):
        return "-" if value is None else f"{value:.1f}"
    return format_number(value)


def _pivot_text(pivot: dict[str, Any]) -> str:
    from tuner.results import format_number

    rows, col, value = pivot["rows"], pivot["cols"][0], pivot["value"]
    row_keys = list(dict.fromkeys(tuple(cell[r] for r in rows) for cell in pivot["cells"]))
    col_keys = list(dict.fromkeys(cell[col] for cell in pivot["cells"]))
    lookup = {(tuple(cell[r] for r in rows), cell[col]): cell[value] for cell in pivot["cells"]}
    header = [*rows, *(f"{col}={format_number(c)}" for c in col_keys)]
    lines = [header]
    for key in row_keys:
        values = [lookup.get((key, c)) for c in col_keys]
        lines.append(
            [*(format_number(k) for k in key), *("-" if v is None else f"{v:.1f}" for v in values)]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  " + "  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines
    )
