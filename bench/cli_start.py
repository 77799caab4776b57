"""Start-up time of the ``egotune`` command: how long a user waits for help, a list or a space.

Usage: ``egotune bench cli_start [--runs N] [--json] [--no-record]``

Times ``egotune --help``, ``egotune results list``, ``egotune spaces list`` and
``egotune spaces show fig10_ms_classification_grid`` in fresh processes (the installed
``egotune`` next to this interpreter, else ``python -m tuner.cli``), ``--runs`` times each, and
records the median wall time of each. ``results list`` reads an empty storage folder, so the
figure is the command's start, not the size of a user's results. The goal: under 1 s each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.record import record

GOAL_S = 1.0
COMMANDS = {
    "help": ["--help"],
    "results_list": ["results", "list"],
    "spaces_list": ["spaces", "list"],
    "spaces_show": ["spaces", "show", "fig10_ms_classification_grid"],
}


def egotune_command() -> list[str]:
    """The ``egotune`` a user runs: the script beside this interpreter, else the module."""
    script = Path(sys.executable).with_name("egotune")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tuner.cli"]


def time_command(argv: list[str], runs: int, env: dict[str, str]) -> list[float]:
    """Wall seconds of ``runs`` fresh processes of ``argv``; a failing command is an error."""
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        walls.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-500:]}")
    return walls


def measure(runs: int) -> dict[str, list[float]]:
    """Each command's wall times, by the names of ``COMMANDS``."""
    base = egotune_command()
    with tempfile.TemporaryDirectory(prefix="egotune-cli-start-") as folder:
        env = {**os.environ, "EGOTUNE_STORAGE": folder}
        return {name: time_command([*base, *args], runs, env) for name, args in COMMANDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per command")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-record", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    timings = measure(max(1, args.runs))
    medians = {f"{name}_s": round(statistics.median(walls), 2) for name, walls in timings.items()}
    figures: dict[str, object] = {**medians, "goal_met": max(medians.values()) < GOAL_S}
    details = {"runs": args.runs, "goal_s": GOAL_S, "timings": timings, "load": os.getloadavg()}
    if not args.no_record:
        record("cli_start", figures, details=details)
    if args.json:
        print(json.dumps({**figures, **details}, indent=2))
    else:
        print("; ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
