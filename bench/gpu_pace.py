"""Where a GPU search's time goes: the step alone, an engine run, trials sharing a GPU.

Usage: ``egotune bench gpu_pace [--data ROOT] [--epochs N] [--trials N] [--waves N] [--workers N]
[--step-ms MS] [--crop PX] [--frames T] [--parts step,engine,search] [--json] [--no-record]``

The model is the report's Fig. 10 configuration (ego_rnn_ms, stage 2, ResNet-34, 224 px, T = 16,
batch 32, Adam; ``weights: none``) on a synthetic GTEA61 of 61 classes with one video each per
user (``egotune data synth ROOT --classes 61 --videos-per-class 1``, made once under
``$EGOTUNE_CACHE_DIR/bench/gpu-pace-data`` unless ``--data`` names one).

* **step**: the engine's training step alone on one batch, for each ``compile`` setting (CUDA
  only).
* **engine**: one run of the engine with its checkpoints, as a trial runs it but without Ray:
  per epoch the loop's period, the seconds the GPU was busy in it, the step share
  (busy / period), the data wait, validation against its forward time, checkpoint blocking, and
  the start-up parts (imports, the decoded-frame store, the model, the whole ``Trainer``).
* **search**: ``--waves`` x ``--trials`` trials of a grid, ``--trials`` at a time sharing one GPU
  (``gpus: 1 / trials`` each), through ``egotune search`` on a local Ray: GPU busy % over the
  search's epochs, per-epoch figures from its tables, ``startup_s`` of the first wave (fresh
  workers) and of the later ones (reused workers), checkpoint blocking (the last epoch's, which
  waits for the trial's final write, apart).

On a machine without CUDA the step is simulated (:mod:`tuner.training.simulated_gpu`): each batch's
forward, backward and optimiser step become a wait of the recorded H200 time (``--step-ms``,
27 ms per 32 clips at T = 16 and 224 px, scaled by clips, frames and pixels; validation batches
0.6 of that), serialised across the trials as kernels are on one GPU. Everything around the step
runs for real, so the host-side overhead per epoch (period minus GPU-busy seconds) is measured on
this machine. On CUDA, GPU busy is sampled through NVML (``nvidia-ml-py``) every 0.1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.record import record

FIG10: dict[str, Any] = {
    "model": "ego_rnn_ms",
    "stage": 2,
    "backbone": "resnet34",
    "weights": "none",
    "ms_layer": "conv5",
    "ms_task": "classification",
    "optimizer": "adam",
    "lr": 1e-4,
    "milestones": [3, 5],
    "gamma": 0.1,
    "batch_size": 32,
}
COMPILE_MODES = ("off", "default", "reduce-overhead")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="egotune bench gpu_pace", description=__doc__)
    parser.add_argument("--data", type=Path, help="a GTEA61 folder (default: synthesised once)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the engine run")
    parser.add_argument("--search-epochs", type=int, default=4, help="epochs of each trial")
    parser.add_argument("--trials", type=int, default=4, help="trials sharing the GPU")
    parser.add_argument("--waves", type=int, default=2, help="trials in turn per GPU share")
    parser.add_argument("--workers", type=int, help="loader workers (default: 8, or the CPUs)")
    parser.add_argument("--step-ms", type=float, default=27.0, help="simulated step (no CUDA)")
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--parts", default="step,engine,search", help="which parts to run")
    parser.add_argument("--set", action="append", default=[], help="extra key=value settings")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    cuda = torch.cuda.is_available()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    data = args.data or synthetic_data()
    workers = args.workers or min(8, os.cpu_count() or 1)
    from tuner.training.config import parse_overrides

    config = {
        **FIG10,
        "crop_size": args.crop,
        "frames": args.frames,
        "num_workers": workers,
        "precision": "bf16" if cuda else "fp32",
        "channels_last": cuda,
        "pin_memory": cuda,
        **parse_overrides(args.set),
    }
    result: dict[str, Any] = {
        "simulated": not cuda,
        "step_ms_simulated": None if cuda else args.step_ms,
        "config": config,
    }
    with tempfile.TemporaryDirectory(prefix="egotune-gpu-pace-") as scratch:
        folder = Path(scratch)
        if not cuda:
            os.environ["EGOTUNE_SIMULATED_GPU"] = str(folder / "simulated-gpu")
            os.environ["EGOTUNE_SIMULATED_STEP_MS"] = str(args.step_ms)
        if "step" in parts and cuda:
            result["step"] = step_alone(data, config)
        if "engine" in parts:
            result["engine"] = engine_run(data, config, args.epochs, folder / "engine")
        if "search" in parts:
            result["search"] = search_run(data, config, args, folder / "search")
    figures = headline(result)
    if args.json:
        print(json.dumps({"figures": figures, **result}, indent=1, default=str))
    else:
        print(json.dumps(figures, indent=1))
    if not args.no_record:
        path = record("gpu_pace", figures, details=result)
        print(f"recorded in {path}", file=sys.stderr)
    return 0


def synthetic_data() -> Path:
    cache = os.environ.get("EGOTUNE_CACHE_DIR") or str(Path.home() / ".cache" / "egotune")
    root = Path(cache) / "bench" / "gpu-pace-data"
    if not (root / "GTEA61").is_dir():
        from data_pipeline import synthesize

        synthesize(root, classes=61, videos_per_class=1, seed=0)
    return root / "GTEA61"


# -- the step alone ----------------------------------------------------------------------------
def step_alone(data: Path, config: dict[str, Any], steps: int = 20) -> dict[str, Any]:
    """Clips per second of the engine's training step on one batch, per ``compile`` setting."""
    import torch

    from data_pipeline import discover
    from tuner.training.config import TrainConfig
    from tuner.training.engine import Trainer

    index = discover(data)
    rows: dict[str, Any] = {}
    for mode in COMPILE_MODES:
        try:
            cfg = TrainConfig.from_dict({**config, "compile": mode, "bn_calibration": "off"})
            trainer = Trainer(cfg, index)
            batch = trainer.first_training_batch()
            start = time.perf_counter()
            for _ in range(3):  # compiles, records graphs, tunes kernels
                trainer.train_step(batch)
            torch.cuda.synchronize()
            warm = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(steps):
                trainer.train_step(batch)
            torch.cuda.synchronize()
            seconds = (time.perf_counter() - start) / steps
            rows[mode] = {
                "step_ms": round(1000 * seconds, 2),
                "clips_per_s": round(cfg.batch_size / seconds, 1),
                "warmup_s": round(warm, 1),
            }
            trainer.close()
        except Exception as exc:  # one mode failing must not hide the others
            rows[mode] = {"error": repr(exc)[:300]}
    return rows


# -- the engine run ----------------------------------------------------------------------------
def engine_run(data: Path, config: dict[str, Any], epochs: int, folder: Path) -> dict[str, Any]:
    """One run of the engine with a trial's checkpoints; per-epoch periods and busy seconds."""
    imports = import_seconds()
    from data_pipeline import FrameStore, default_scale_size, discover
    from tuner.training.checkpoints.policy import CheckpointPolicy
    from tuner.training.checkpoints.writer import CheckpointFolder, RunCheckpoints
    from tuner.training.config import TrainConfig
    from tuner.training.engine import Trainer, frame_store_dir
    from tuner.training.recipes import build_model, recipe_for

    cfg = TrainConfig.from_dict({**config, "epochs": epochs})
    start = time.perf_counter()
    index = discover(data)
    parts = {"discover_s": time.perf_counter() - start}
    start = time.perf_counter()
    FrameStore.open(
        index,
        frame_store_dir(cfg),
        scale_size=default_scale_size(cfg.crop_size),
        modalities=recipe_for(cfg.model).modalities,
    )
    parts["frame_store_s"] = time.perf_counter() - start
    start = time.perf_counter()
    build_model(cfg, len(index.classes))
    parts["model_build_s"] = time.perf_counter() - start
    with gpu_busy() as busy:
        start = time.perf_counter()
        trainer = Trainer(cfg, index)
        parts["trainer_s"] = time.perf_counter() - start
        checkpoints = RunCheckpoints(
            trainer, CheckpointFolder(folder), CheckpointPolicy(cfg.checkpoint_every)
        )
        rows = []
        tick = time.time()
        for epoch in trainer.run():
            record_ = epoch.to_dict()
            blocked, size = checkpoints.after_epoch(
                epoch.train_s + epoch.data_wait_s + epoch.val_s,
                stage_end=trainer.finished,
                last=trainer.finished,
            )
            now = time.time()
            row = {**record_, "checkpoint_s": blocked, "checkpoint_bytes": size}
            rows.append({**row, "window": (tick, now)})
            tick = now
        checkpoints.close(wait=True)
        trainer.close()
    for row in rows:
        row["busy_s"] = busy.seconds(*row.pop("window"))
        row["step_share"] = row["busy_s"] / max(row["seconds"] + row["checkpoint_s"], 1e-9)
        row["host_overhead_s"] = row["seconds"] + row["checkpoint_s"] - row["busy_s"]
    later = rows[1:] or rows
    return {
        "startup": {"imports_s": imports, **{k: round(v, 3) for k, v in parts.items()}},
        "epochs": [{k: v for k, v in row.items() if not isinstance(v, dict)} for row in rows],
        "median_after_first": {
            key: round(statistics.median(r[key] for r in later), 4)
            for key in (
                "seconds",
                "busy_s",
                "step_share",
                "host_overhead_s",
                "data_wait_s",
                "val_s",
                "checkpoint_s",
            )
        },
        "val_forward_s": busy.kind_seconds("val", len(rows)),
        "gpu_busy_pct": round(100 * busy.share(), 1),
    }


def import_seconds() -> float:
    """Seconds a fresh interpreter takes to import what a trial worker imports."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tuner.tune.trainable"], check=True)
    return round(time.perf_counter() - start, 2)


# -- the search --------------------------------------------------------------------------------
def search_run(
    data: Path, config: dict[str, Any], args: argparse.Namespace, folder: Path
) -> dict[str, Any]:
    """``--trials`` trials of a grid sharing one GPU, through ``egotune search``."""
    import pandas as pd
    import torch
    import yaml

    cuda = torch.cuda.is_available()
    cpus = os.cpu_count() or 1
    lrs = [1e-4 * (i + 1) for i in range(args.trials * args.waves)]
    fixed = {k: v for k, v in config.items() if k != "lr"}
    per_trial_cpus = max(cpus // args.trials, 1) if cuda else cpus / args.trials
    space = {
        "fixed": {
            **fixed,
            "epochs": args.search_epochs,
            "num_workers": max(int(per_trial_cpus), 1) if cuda else config["num_workers"],
        },
        "grid": {"lr": lrs},
        "scheduler": {"algorithm": "grid"},
        "resources": {"cpus": per_trial_cpus, "gpus": 1 / args.trials if cuda else 0},
    }
    folder.mkdir(parents=True, exist_ok=True)
    space_file = folder / "gpu_pace_search.yaml"
    space_file.write_text(yaml.safe_dump(space))
    storage = folder / "storage"
    command = [
        sys.executable,
        "-m",
        "tuner.cli",
        "search",
        str(space_file),
        "--data",
        str(data),
        "--storage",
        str(storage),
        "--name",
        "gpu-pace",
        "--json",
    ]
    with gpu_busy() as busy:
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"search failed ({done.returncode}): {done.stderr[-2000:]}")
    epochs = pd.read_parquet(storage / "gpu-pace" / "epochs.parquet")
    first = epochs[epochs["epoch"] == 1].sort_values("startup_s")
    later = epochs[epochs["epoch"] > 1]
    last = epochs["epoch"] == epochs["epoch"].max()
    # the trials that started first (fresh workers) took longest to start
    fresh = first["startup_s"].nlargest(args.trials)
    reused = first["startup_s"].drop(fresh.index)

    def median(frame: Any, column: str) -> float | None:
        values = frame[column].dropna()
        return round(float(values.median()), 4) if len(values) else None

    return {
        "wall_s": round(wall, 1),
        "trial_epochs": len(epochs),
        "rows_once": bool(not epochs.duplicated(["trial_id", "epoch"]).any()),
        "gpu_busy_pct_epochs": round(100 * busy.share(), 1),
        "gpu_busy_pct_wall": round(100 * busy.seconds_total() / wall, 1),
        "startup_s_fresh": sorted(round(float(v), 2) for v in fresh),
        "startup_s_reused": sorted(round(float(v), 2) for v in reused),
        "checkpoint_s_max": round(float(epochs.loc[~last, "checkpoint_s"].max()), 3),
        "checkpoint_s_mean": round(float(epochs.loc[~last, "checkpoint_s"].mean()), 3),
        "final_checkpoint_s_max": round(float(epochs.loc[last, "checkpoint_s"].max()), 3),
        "median_after_first": {
            column: median(later, column)
            for column in ("seconds", "train_s", "data_wait_s", "val_s", "report_s")
        },
    }


# -- GPU busy ----------------------------------------------------------------------------------
class _Busy:
    """Busy intervals of the (real or simulated) GPU while a block ran."""

    def __init__(self) -> None:
        self.intervals: list[tuple[float, float, str]] = []

    def seconds(self, start: float, end: float, kind: str | None = None) -> float:
        return sum(
            max(0.0, min(e, end) - max(s, start))
            for s, e, k in self.intervals
            if kind is None or k == kind
        )

    def seconds_total(self) -> float:
        return sum(e - s for s, e, _ in self.intervals)

    def kind_seconds(self, kind: str, epochs: int) -> float:
        """Mean busy seconds of ``kind`` per epoch."""
        total = sum(e - s for s, e, k in self.intervals if k == kind)
        return round(total / max(epochs, 1), 4)

    def share(self) -> float:
        """Busy share between the first busy moment and the last (the epochs' window)."""
        if not self.intervals:
            return 0.0
        first = min(s for s, _, _ in self.intervals)
        last = max(e for _, e, _ in self.intervals)
        return self.seconds_total() / max(last - first, 1e-9)


@contextmanager
def gpu_busy() -> Iterator[_Busy]:
    """Collect busy intervals: from the simulated GPU's logs, or NVML samples on CUDA."""
    busy = _Busy()
    folder = os.environ.get("EGOTUNE_SIMULATED_GPU")
    if folder:
        from tuner.training.simulated_gpu import read_busy

        started = time.time()
        yield busy
        busy.intervals = [(s, e, k) for s, e, k, _ in read_busy(folder) if s >= started]
        return
    stop = threading.Event()
    samples: list[tuple[float, float]] = []
    sampler = threading.Thread(target=_nvml_samples, args=(stop, samples), daemon=True)
    sampler.start()
    try:
        yield busy
    finally:
        stop.set()
        sampler.join()
        # each sample stands for the 0.1 s before it, busy for its utilisation's share
        busy.intervals = [(t - 0.1 * u, t, "gpu") for t, u in samples if u > 0]


def _nvml_samples(stop: threading.Event, samples: list[tuple[float, float]]) -> None:
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    while not stop.wait(0.1):
        rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
        samples.append((time.time(), rates.gpu / 100))
    pynvml.nvmlShutdown()


def headline(result: dict[str, Any]) -> dict[str, Any]:
    figures: dict[str, Any] = {"simulated": result["simulated"]}
    engine = result.get("engine")
    if engine:
        median = engine["median_after_first"]
        figures.update(
            engine_epoch_s=median["seconds"],
            engine_step_share=median["step_share"],
            engine_host_overhead_s=median["host_overhead_s"],
            engine_data_wait_s=median["data_wait_s"],
            engine_val_s=median["val_s"],
            engine_val_forward_s=engine["val_forward_s"],
            engine_trainer_s=engine["startup"]["trainer_s"],
        )
    search = result.get("search")
    if search:
        figures.update(
            search_gpu_busy_pct=search["gpu_busy_pct_epochs"],
            search_epoch_s=search["median_after_first"]["seconds"],
            search_startup_s_fresh=max(search["startup_s_fresh"], default=None),
            search_startup_s_reused=max(search["startup_s_reused"], default=None),
            search_checkpoint_s_max=search["checkpoint_s_max"],
        )
    step = result.get("step")
    if step:
        for mode, row in step.items():
            figures[f"clips_per_s_{mode}"] = row.get("clips_per_s")
    return figures


if __name__ == "__main__":
    sys.exit(main())
