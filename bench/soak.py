"""Soak: hundreds of short trials through ``run_search``; the driver's memory and trial rate.

Usage: ``egotune bench soak [--trials N] [--epochs E] [--epoch-seconds S] [--concurrency C]
[--env KEY=VALUE ...] [--reuse-actors] [--json] [--no-record]``

Runs one grid search of ``N`` fixed-work trials (bench/tune_overhead.py's trainable: sleep per
epoch, a small checkpoint per report) through :func:`tuner.tune.search.run_search`, while a thread
samples this process's resident memory (the Ray driver: Tune's controller, the Parquet callback)
every half second. Ray issue #64231 reports driver RSS growing linearly with the number of trials;
this measures it here: RSS at the start and end, the peak, and the growth per 100 completed trials
(least-squares slope of RSS against trials completed, after the first 10% as warm-up), with the
completion times taken from the epochs table (the trainable reports ``reported_at``). ``--env``
sets Tune environment variables for the run, to measure a mitigation against the plain run:
``--env TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1`` drops Tune's per-trial CSV, JSON and TensorBoard
loggers, which nothing in egotune reads (its results are the Parquet tables).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.record import record
from bench.tune_overhead import FixedWorkTrial, fixed_work_space, prepare, run_fixed_work

MiB = 2**20


def rss_mib() -> float:
    """This process's resident memory now (Linux ``/proc``; elsewhere the peak so far)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / MiB
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class RssSampler(threading.Thread):
    """Samples this process's RSS (MiB) every ``interval`` seconds until stopped."""

    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append((time.time(), rss_mib()))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def completion_times(experiment: Path) -> list[float]:
    """Per trial, when it reported its last epoch (``reported_at`` in the epochs table), sorted."""
    from tuner.results import read_epochs

    return sorted(read_epochs(experiment).groupby("trial_id")["reported_at"].max().tolist())


def growth_per_100_trials(
    samples: list[tuple[float, float]], ends: list[float], warmup: float = 0.1
) -> float:
    """Least-squares slope of RSS (MiB) against trials completed, times 100, after warm-up."""
    skip = int(len(ends) * warmup)
    points = [
        (sum(1 for end in ends if end <= t), rss)
        for t, rss in samples
        if sum(1 for end in ends if end <= t) > skip
    ]
    if len(points) < 2 or len({x for x, _ in points}) < 2:
        return float("nan")
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    covariance = sum((x - mean_x) * (y - mean_y) for x, y in points)
    variance = sum((x - mean_x) ** 2 for x, _ in points)
    return 100 * covariance / variance


def soak(args: argparse.Namespace) -> dict[str, Any]:
    for item in args.env:
        key, _, value = item.partition("=")
        os.environ[key] = value
    trial = FixedWorkTrial(args.epoch_seconds, args.checkpoint_kib * 1024)
    space = fixed_work_space(args.trials, args.epochs, args.concurrency)
    with tempfile.TemporaryDirectory(prefix="egotune-soak-") as tmp:
        folder = Path(tmp)
        data = prepare(folder, num_cpus=args.concurrency)
        sampler = RssSampler(args.sample_seconds)
        sampler.start()
        start, wall, experiment = run_fixed_work(
            space, trial, data, folder / "results", "soak", reuse_actors=args.reuse_actors
        )
        end_rss = rss_mib()
        sampler.stop()
        ends = completion_times(experiment)
    rss = [value for _, value in sampler.samples]
    return {
        "trials": len(ends),
        "wall_s": wall,
        "trials_per_minute": 60 * len(ends) / wall,
        "rss_start_mib": rss[0],
        "rss_end_mib": end_rss,
        "rss_peak_mib": max(rss),
        "rss_growth_per_100_trials_mib": growth_per_100_trials(sampler.samples, ends),
        "env": list(args.env),
        "reuse_actors": args.reuse_actors,
        "samples": [(round(t - start, 1), round(value, 1)) for t, value in sampler.samples],
        "completions_s": [round(end - start, 1) for end in ends],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="trials (200)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (3)")
    parser.add_argument("--epoch-seconds", type=float, default=0.2, help="sleep per epoch (0.2)")
    parser.add_argument("--concurrency", type=int, default=4, help="trials at once (4)")
    parser.add_argument("--checkpoint-kib", type=int, default=64, help="checkpoint size (64)")
    parser.add_argument("--sample-seconds", type=float, default=0.5, help="RSS sampling (0.5)")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="set for the run"
    )
    parser.add_argument(
        "--reuse-actors", action="store_true", help="SearchOptions.reuse_actors (off by default)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-record", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    figures = soak(args)
    headline = {
        "trials": figures["trials"],
        "trials_per_min": round(figures["trials_per_minute"], 1),
        "rss_start_mib": round(figures["rss_start_mib"]),
        "rss_end_mib": round(figures["rss_end_mib"]),
        "growth_mib_per_100_trials": round(figures["rss_growth_per_100_trials_mib"], 1),
    }
    if args.env:
        headline["env"] = " ".join(args.env)
    if args.reuse_actors:
        headline["reuse_actors"] = True
    if not args.no_record:
        record("soak", headline, details={"args": vars(args), **figures})
    shown = {k: v for k, v in figures.items() if k not in ("samples", "completions_s")}
    print(json.dumps(figures if args.json else shown, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
