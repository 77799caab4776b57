"""What the search machinery costs: trials of known length through ``run_search``, wall vs ideal.

Usage: ``egotune bench tune_overhead [--trials N] [--epochs E] [--epoch-seconds S]
[--concurrency C] [--checkpoint-kib K] [--stream-results R] [--reuse-actors] [--json]
[--no-record]``

Each trial sleeps ``--epoch-seconds`` per epoch (fixed, known work) and then reports the metrics and
a checkpoint of ``--checkpoint-kib`` KiB, as the real trainable does after every epoch. The trials
go through :func:`tuner.tune.search.run_search` (pre-flight checks on a tiny synthetic dataset,
``experiment.json``, the Tuner with its checkpoint and failure settings, and the Parquet callback),
with only the trainable swapped. Ray is started first and not counted. With ``C`` trials at once,
the ideal wall time is ``ceil(N / C) * E * S``; the overhead is ``(wall - ideal) / ideal``, which
is the trial start-up, reporting, checkpointing and result streaming a real search pays too.

The default (8 trials of 5 x 2 s = 10 s, 4 at once) keeps the run near a minute on two CPU
cores; start-up costs weigh more on trials that short. The 30-second variant that the < 10% goal
refers to: ``egotune bench tune_overhead --trials 16 --epochs 10 --epoch-seconds 3``. Most of the
overhead is starting a process per trial: ray.tune and, through the dataset index the trainable
receives, torch take about 5 CPU-seconds to import, so four trials starting at once on two cores
wait about 10 s. ``--reuse-actors`` runs the search with ``SearchOptions.reuse_actors`` so that
each of the ``C`` processes serves trial after trial and pays this once.

Then ``--stream-results`` results are fed straight to ``ParquetResultsCallback`` (no Tune, default
flush interval) to measure how many epoch rows per second the driver can stream into Parquet.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# run as a script from any folder: the repository root holds the packages
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.record import record
from tuner.spaces import SearchSpace, parse_space
from tuner.tune.search import SearchOptions, run_search

SYNTH = {"classes": 3, "videos_per_class": 1, "size": (64, 48), "seed": 0}


@dataclass
class FixedWorkTrial:
    """A function trainable whose every epoch costs exactly ``epoch_seconds`` of sleep.

    Called as ``run_search`` calls the real trainable: ``trial(config, index=..., store=...)``.
    """

    epoch_seconds: float
    checkpoint_bytes: int

    def __call__(self, config: dict[str, Any], *, index: Any = None, store: Any = None) -> None:
        from ray import tune

        seed, epochs = int(config.get("seed", 0)), int(config["epochs"])
        for epoch in range(1, epochs + 1):
            time.sleep(self.epoch_seconds)
            val_acc = 50.0 + 10.0 * math.sin(seed + epoch)  # differs by trial, bounded
            metrics = {"epoch": epoch, "stage": 1, "stage_epoch": epoch, "val_acc": val_acc}
            metrics.update(checkpoint_score=val_acc, seconds=self.epoch_seconds)
            metrics["reported_at"] = time.time()  # lands in epochs.parquet's extra column
            with tempfile.TemporaryDirectory(prefix="egotune-bench-") as folder:
                (Path(folder) / "state.pt").write_bytes(os.urandom(self.checkpoint_bytes))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def fixed_work_space(trials: int, epochs: int, concurrency: int, cpus: float = 1.0) -> SearchSpace:
    """A grid of ``trials`` seeds, each ``epochs`` long, ``concurrency`` at once."""
    document = {
        "description": "fixed-work trials for the overhead benchmarks",
        "fixed": {"model": "ego_rnn", "stage": 1, "epochs": epochs},
        "repeats": trials,
        "scheduler": {"algorithm": "grid", "max_concurrent": concurrency},
        "resources": {"cpus": cpus, "gpus": 0},
    }
    return parse_space(document, source="bench:fixed_work", name="fixed_work")


def prepare(folder: Path, num_cpus: int) -> Path:
    """A tiny synthetic dataset for the pre-flight checks, and a local Ray (not timed)."""
    from ray import cloudpickle

    from data_pipeline import synthesize
    from tuner.tune.session import connect

    # Workers cannot import bench/ (it is not installed): send the trainable by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    summary = synthesize(folder / "data", **SYNTH)  # type: ignore[arg-type]
    connect(None, num_cpus=num_cpus, include_dashboard=False)
    return summary.root


def run_fixed_work(
    space: SearchSpace,
    trial: FixedWorkTrial,
    data: Path,
    storage: Path,
    name: str,
    reuse_actors: bool = False,
) -> tuple[float, float, Path]:
    """Start time, wall seconds of ``run_search`` and the experiment folder it wrote."""
    options = SearchOptions(
        data=data,
        storage=storage,
        name=name,
        verbose=0,
        argv=["bench"],
        trainable=trial,
        reuse_actors=reuse_actors,
    )
    start = time.time()
    outcome = run_search(space, options)
    wall = time.time() - start
    if outcome.num_errors:
        raise RuntimeError(f"{outcome.num_errors} fixed-work trials failed; see {storage}")
    return start, wall, outcome.experiment_dir


def result_span(experiment: Path, start: float) -> tuple[float, float]:
    """Seconds from ``start`` to the first result and to the last one, from the ``reported_at``
    of the epoch rows: what comes before is start-up, what comes after is tear-down."""
    from tuner.results import read_epochs

    stamps = read_epochs(experiment)["reported_at"]
    return float(stamps.min()) - start, float(stamps.max()) - start


def stream_capacity(folder: Path, results: int, trials: int = 50) -> dict[str, float]:
    """Epoch rows per second that ``ParquetResultsCallback`` streams into Parquet, without Tune."""
    from tuner.results import read_epochs
    from tuner.tune.callbacks import ParquetResultsCallback

    callback = ParquetResultsCallback(folder)
    stand_ins = [
        SimpleNamespace(
            trial_id=f"t{i:04d}", config={"lr": 1e-4, "seed": i}, status="RUNNING", num_failures=0
        )
        for i in range(trials)
    ]
    callback.setup()
    start = time.perf_counter()
    for n in range(results):
        trial = stand_ins[n % trials]
        result = {
            "epoch": n // trials + 1,
            "val_acc": 50.0,
            "train_loss": 1.0,
            "seconds": 1.0,
            "time_this_iter_s": 1.0,
        }
        callback.on_trial_result(n, stand_ins, trial, result)  # type: ignore[arg-type]
    callback.on_experiment_end(stand_ins)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    written = len(read_epochs(folder))
    if written != results:
        raise RuntimeError(f"stream capacity: {written} rows on disk, {results} reported")
    parts = len(list((folder / "epochs.parquet").glob("*.parquet")))
    return {"rows": results, "seconds": seconds, "rows_per_s": results / seconds, "parts": parts}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    trial = FixedWorkTrial(args.epoch_seconds, args.checkpoint_kib * 1024)
    space = fixed_work_space(args.trials, args.epochs, args.concurrency)
    with tempfile.TemporaryDirectory(prefix="egotune-overhead-") as tmp:
        folder = Path(tmp)
        data = prepare(folder, num_cpus=args.concurrency)
        start, wall, experiment = run_fixed_work(
            space, trial, data, folder / "results", "run", reuse_actors=args.reuse_actors
        )
        first_result_s, last_result_s = result_span(experiment, start)
        from tuner.results import read_epochs, read_trials

        rows, trial_rows = len(read_epochs(experiment)), len(read_trials(experiment))
        parts = len(list((experiment / "epochs.parquet").glob("*.parquet")))
        capacity = stream_capacity(folder / "stream", args.stream_results)
    waves = math.ceil(args.trials / args.concurrency)
    ideal = waves * args.epochs * args.epoch_seconds
    expected_rows = args.trials * args.epochs
    if rows != expected_rows or trial_rows != args.trials:
        raise RuntimeError(
            f"Parquet holds {rows} epoch rows / {trial_rows} trials, "
            f"expected {expected_rows} / {args.trials}"
        )
    return {
        "trial_seconds": args.epochs * args.epoch_seconds,
        "wall_s": wall,
        "ideal_s": ideal,
        "overhead": (wall - ideal) / ideal,
        "overhead_per_wave_s": (wall - ideal) / waves,
        "first_result_s": first_result_s,
        "after_last_result_s": wall - last_result_s,
        "search_rows_per_s": rows / wall,
        "epoch_rows": rows,
        "epoch_part_files": parts,
        "stream": capacity,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="trials (8)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per trial (5)")
    parser.add_argument("--epoch-seconds", type=float, default=2.0, help="sleep per epoch (2)")
    parser.add_argument("--concurrency", type=int, default=4, help="trials at once (4)")
    parser.add_argument("--checkpoint-kib", type=int, default=64, help="checkpoint size (64)")
    parser.add_argument(
        "--stream-results", type=int, default=20000, help="results fed to the callback (20000)"
    )
    parser.add_argument(
        "--reuse-actors", action="store_true", help="SearchOptions.reuse_actors (off by default)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-record", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    figures = measure(args)
    headline = {
        "trials": f"{args.trials}x{figures['trial_seconds']:g}s/{args.concurrency} at once",
        "reuse_actors": args.reuse_actors,
        "wall_s": round(figures["wall_s"], 1),
        "ideal_s": round(figures["ideal_s"], 1),
        "overhead": f"{figures['overhead']:.1%}",
        "search_rows_per_s": round(figures["search_rows_per_s"], 2),
        "stream_rows_per_s": round(figures["stream"]["rows_per_s"]),
    }
    if not args.no_record:
        record("tune_overhead", headline, details={"args": vars(args), **figures})
    print(json.dumps(figures, indent=2) if args.json else _text(headline, figures))
    return 0


def _text(headline: dict[str, Any], figures: dict[str, Any]) -> str:
    lines = [f"{key}: {value}" for key, value in headline.items()]
    lines.append(
        f"overhead per wave of trials: {figures['overhead_per_wave_s']:.2f} s; first result "
        f"after {figures['first_result_s']:.0f} s, return {figures['after_last_result_s']:.0f} s "
        "after the last; "
        f"{figures['epoch_rows']} epoch rows in {figures['epoch_part_files']} part files"
    )
    stream = figures["stream"]
    lines.append(
        f"callback alone: {stream['rows']} rows in {stream['seconds']:.2f} s "
        f"({stream['parts']} part files)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
