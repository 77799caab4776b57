"""Wall time of ``egotune demo`` from nothing, and what its best trial reached against chance.

Usage: ``egotune bench demo [--json] [--no-record]``

Runs ``egotune demo --json`` in a fresh process with an empty storage folder and an empty
decoded-frame cache (``EGOTUNE_STORAGE``, ``EGOTUNE_CACHE_DIR`` in a temporary folder), as on a
fresh clone: the synthetic dataset is written, Ray starts, the ``demo`` space runs with ASHA and
Ray stops. The goals: at most 180 s on two cores, the best trial at least three times chance.
The machine's load average before and after is kept with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.record import record

GOAL_S, GOAL_RATIO = 180.0, 3.0


def measure() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="egotune-demo-bench-") as folder:
        env = {
            **os.environ,
            "EGOTUNE_STORAGE": str(Path(folder) / "results"),
            "EGOTUNE_CACHE_DIR": str(Path(folder) / "cache"),
        }
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "tuner.cli", "demo", "--json"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"egotune demo failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    best = report["best"]["best_val_acc"]
    return {
        "wall_s": round(wall, 1),
        "search_s": report["seconds"],
        "best": round(best, 2),
        "chance": round(report["chance"], 2),
        "ratio": round(best / report["chance"], 2),
        "trials": report["trials"],
        "goal_time_met": wall <= GOAL_S,
        "goal_ratio_met": best / report["chance"] >= GOAL_RATIO,
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "console_tail": done.stderr.splitlines()[-12:],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-record", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    figures = measure()
    headline = {
        key: figures[key]
        for key in ("wall_s", "search_s", "best", "chance", "ratio", "load_before", "load_after")
    }
    if not args.no_record:
        record("demo", headline, details=figures)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        wall, search = figures["wall_s"], figures["search_s"]
        print(
            f"egotune demo: {wall:.0f} s from nothing (search {search:.0f} s); best "
            f"{figures['best']:.1f} % = {figures['ratio']:.1f}x chance ({figures['chance']:.1f} %);"
            f" load {figures['load_before']} -> {figures['load_after']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
