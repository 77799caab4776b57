"""Wall time of a small grid with prefix sharing and without, in one run.

Usage: ``egotune bench prefix_sharing [--epochs N] [--json] [--no-record]``

The grid is a Fig. 10-shaped one sized for a CPU: Ego-RNN stage 1 with the demo's model
(ResNet-18, random weights, 64 px, 4 frames, a 128-channel ConvLSTM) on a synthetic GTEA61 of 4
classes, ``lr`` [1e-3, 1e-2] x ``milestones`` [[2], [3]] x ``gamma`` [0.1, 0.5] (8 trials), two at
a time, through :func:`tuner.tune.search.run_search` on one local Ray: first with
``share_prefixes: true`` (the default), then ``false``. Reported: each search's wall time, the
trial-epochs it trained (rows whose ``computed_by`` is the trial itself) against the plan, and
the largest difference between the two searches' per-epoch validation losses, configuration by
configuration (0 on a CPU: the shared epochs are exact).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# run as a script from any folder: the repository root holds the packages
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.record import record

GRID = {"lr": [1e-3, 1e-2], "milestones": [[2], [3]], "gamma": [0.1, 0.5]}
TINY = {
    "model": "ego_rnn",
    "stage": 1,
    "backbone": "resnet18",
    "weights": "none",
    "crop_size": 64,
    "frames": 4,
    "batch_size": 8,
    "mem_size": 128,
    "num_workers": 0,
}


def space_doc(share: bool, epochs: int) -> dict[str, Any]:
    return {
        "fixed": {**TINY, "epochs": epochs},
        "grid": GRID,
        "scheduler": {"algorithm": "grid", "max_concurrent": 2},
        "resources": {"cpus": 1, "gpus": 0},
        "share_prefixes": share,
    }


def measure(epochs: int) -> dict[str, Any]:
    import ray

    from data_pipeline import synthesize
    from tuner import results
    from tuner.spaces import parse_space
    from tuner.tune.search import SearchOptions, run_search
    from tuner.tune.session import connect

    figures: dict[str, Any] = {}
    curves = {}
    with tempfile.TemporaryDirectory(prefix="egotune-bench-sharing-") as tmp:
        root = synthesize(Path(tmp) / "data", classes=4, videos_per_class=3, size=(130, 73), seed=3)
        connect(None, num_cpus=2, include_dashboard=False)  # started before either clock runs
        try:
            for share in (True, False):
                name = "shared" if share else "unshared"
                space = parse_space(space_doc(share, epochs), source=f"{name}.yaml", name=name)
                options = SearchOptions(
                    data=root.root, storage=Path(tmp) / "results", name=name, num_cpus=2, verbose=0
                )
                start = time.perf_counter()
                outcome = run_search(space, options)
                figures[f"{name}_wall_s"] = round(time.perf_counter() - start, 2)
                experiment = results.load_experiment(outcome.experiment_dir)
                epochs_table = experiment.epochs
                own = epochs_table["computed_by"] == epochs_table["trial_id"]
                figures[f"{name}_trial_epochs"] = int(own.sum())
                curves[share] = _by_configuration(experiment)
                plan = space.sharing_plan()
                if plan is not None:
                    figures["planned_trial_epochs"] = plan.shared_trial_epochs
                    figures["grid_trial_epochs"] = plan.trial_epochs
        finally:
            ray.shutdown()
    difference = (curves[True] - curves[False]).abs().max()
    figures["max_val_loss_difference"] = float(difference)
    figures["wall_saved_pct"] = round(
        100.0 * (1 - figures["shared_wall_s"] / figures["unshared_wall_s"]), 1
    )
    return figures


def _by_configuration(experiment: Any) -> Any:
    keys = experiment.trials[["trial_id", *GRID]].copy()
    keys["milestones"] = keys["milestones"].map(str)
    keys.columns = ["trial_id", *(f"config.{k}" for k in GRID)]
    merged = experiment.epochs.merge(keys, on="trial_id")
    return merged.set_index([*(f"config.{k}" for k in GRID), "epoch"]).sort_index()["val_loss"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per trial (5)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--no-record", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    figures = measure(args.epochs)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    if not args.no_record:
        record("prefix_sharing", figures, details={"args": vars(args), "grid": GRID})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
