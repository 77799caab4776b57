"""What a trial-epoch costs besides training, old checkpoint policy against the new default.

Usage: ``egotune bench epoch_overhead [--epochs N] [--tflops 200,400] [--json] [--no-record]``

Two real searches, one after the other in one process, through :func:`tuner.tune.search.run_search`
(Ray Tune, a real storage folder, the Parquet tables) with the model of the report's Fig. 10
configuration at its real size (ego_rnn_ms, stage 2, ResNet-34, 224 px, ``weights: none``), on a
tiny synthetic dataset with 2 frames per clip so that an epoch takes seconds on a CPU:

* **old**: the trainable as egotune had it before periodic checkpoints: after every epoch the
  full state (every model weight, frozen ones included, and Adam's moments) and the whole metrics
  history are written to a temporary folder that ``tune.report`` copies into the storage, one
  process per trial, and Tune keeping one checkpoint (which forces an experiment snapshot per
  checkpoint);
* **new**: the trainable and search as they are, with ``checkpoint_every`` set to what the
  ``auto`` rule chooses at GPU pace: :func:`tuner.training.checkpoints.policy.auto_every` fed this
  machine's measured snapshot and write times and the projected GPU epoch instead of the CPU's.

The projected GPU epoch is the FLOPs of one full GTEA61 epoch of that configuration (batch 32,
T = 16, 224 px: 320 training clips after ``drop_last``, forward and backward, and 116 validation
clips, forward), counted with ``torch.utils.flop_counter`` on fake tensors, at ``--tflops``.

Reported per policy: blocking seconds per epoch that are not compute (``checkpoint_s`` +
``report_s`` of the rows), bytes persisted per epoch, start-up seconds of the trial, and the
projected non-compute share at GPU pace, ``overhead / (overhead + GPU epoch)``
(``projected_share_200`` and ``projected_share_400``, percent). For the new policy the overhead
at GPU pace is the report round trip plus the snapshot amortised over the checkpoint interval,
and its bytes per epoch are projected for a 100-epoch trial: a resume state (and new best
weights) every ``checkpoint_every`` epochs and the complete best weights once at the end.
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

from bench.record import publish

FIG10 = {
    "model": "ego_rnn_ms",
    "stage": 2,
    "backbone": "resnet34",
    "weights": "none",
    "crop_size": 224,
    "ms_layer": "conv5",
    "ms_task": "classification",
    "optimizer": "adam",
    "lr": 1e-4,
    "weight_decay": 4e-5,
    "milestones": [40, 80],
    "gamma": 0.2,
}
CPU_SIZED = {"frames": 2, "batch_size": 2, "num_workers": 0, "device": "cpu"}
GPU_EPOCH = {"batch": 32, "frames": 16, "train_clips": 320, "val_clips": 116}
SYNTH = {"classes": 3, "videos_per_class": 1, "size": (256, 192), "seed": 0}
TRIAL_EPOCHS = 100  # a Fig. 10 trial, for the amortised bytes of the new policy


def legacy_trial(config: dict[str, Any], *, index: Any, store: Any = None) -> None:
    """The trainable before periodic checkpoints, for comparison (its checkpoint path only)."""
    import tempfile as tmp

    from ray import tune

    from tuner.training.checkpoints.contents import host_copy
    from tuner.training.checkpoints.files import save_checkpoint
    from tuner.training.config import TrainConfig
    from tuner.training.engine import Trainer
    from tuner.tune.params import resolve_trial_config
    from tuner.tune.trainable import _startup_s

    entered = time.perf_counter()
    trainer = Trainer(TrainConfig.from_trial(resolve_trial_config(config)), index)
    history: list[dict[str, Any]] = []
    report_s, extra = 0.0, {"startup_s": _startup_s(entered)}
    for record_ in trainer.run():
        metrics = {**record_.to_dict(), **extra, "checkpoint_score": record_.val_acc}
        history.append(metrics)
        with tmp.TemporaryDirectory(prefix="egotune-legacy-") as folder:
            start = time.perf_counter()
            state = host_copy(trainer.resume_state())
            state["model"] = host_copy(trainer.model.state_dict())  # frozen weights too
            path = save_checkpoint(state, Path(folder) / "state.pt")
            (Path(folder) / "history.json").write_text(json.dumps(history))
            size = path.stat().st_size
            metrics.update(checkpoint_s=time.perf_counter() - start, report_s=report_s)
            metrics["checkpoint_bytes"] = size
            start = time.perf_counter()
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
            report_s = time.perf_counter() - start  # includes Tune's copy into the storage
        extra = {}


def gpu_epoch_flops() -> dict[str, float]:
    """Training and validation FLOPs of one full GTEA61 epoch of the configuration."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    from bench.train_step import Case, plan
    from tuner.training.config import TrainConfig
    from tuner.training.recipes import build_model

    b, t = GPU_EPOCH["batch"], GPU_EPOCH["frames"]
    train = plan(Case("ego_rnn_ms", 2, t, "fp32"), b, 224).gflops_per_clip
    config = TrainConfig.from_dict({**FIG10, "frames": t, "device": "cpu"})
    with FakeTensorMode():
        model = build_model(config, 61).eval()
        clip = torch.randn(1, t, 3, 224, 224)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(clip)
    val = counter.get_total_flops() / 1e9
    return {
        "train_gflops_per_clip": train,
        "val_gflops_per_clip": val,
        "epoch_tflop": (train * GPU_EPOCH["train_clips"] + val * GPU_EPOCH["val_clips"]) / 1e3,
    }


def checkpoint_costs(data: Path, folder: Path) -> dict[str, float]:
    """Snapshot and write seconds of this configuration's state on this machine, and sizes."""
    from data_pipeline import discover
    from tuner.training.checkpoints.contents import tensor_bytes
    from tuner.training.checkpoints.policy import CheckpointPolicy
    from tuner.training.checkpoints.writer import CheckpointFolder, RunCheckpoints
    from tuner.training.config import TrainConfig
    from tuner.training.engine import Trainer

    config = TrainConfig.from_dict({**FIG10, **CPU_SIZED, "epochs": 1, "checkpoint_every": 1})
    trainer = Trainer(config, discover(data))
    list(trainer.run())
    run = RunCheckpoints(trainer, CheckpointFolder(folder), CheckpointPolicy(1))
    start = time.perf_counter()
    state, _ = run._snapshot.take(trainer.resume_state())
    snapshot_s = time.perf_counter() - start
    run.after_epoch(1.0, stage_end=False, last=False)  # a periodic write: state and best
    run.close(wait=True)
    saved = run.completed[-1]
    return {
        "snapshot_s": snapshot_s,
        "write_s": saved.write_s,
        "state_bytes": tensor_bytes(state),
        "best_bytes": tensor_bytes(trainer.best_model),
        "final_best_bytes": tensor_bytes(trainer.model.state_dict()),
    }


def run_policy(name: str, data: Path, storage: Path, epochs: int, every: int | None) -> Any:
    """One single-trial search of the configuration; ``every=None`` runs the old trainable."""
    from tuner.spaces import parse_space
    from tuner.tune import search
    from tuner.tune.search import SearchOptions, run_search

    fixed = {**FIG10, **CPU_SIZED, "epochs": epochs}
    if every is not None:
        fixed["checkpoint_every"] = every
    doc = {"fixed": fixed, "scheduler": {"algorithm": "grid"}, "resources": {"cpus": 2}}
    options = SearchOptions(data=data, storage=storage, name=name, verbose=0, argv=["bench"])
    restore = search.checkpoint_config
    if every is None:
        from ray import tune

        options.trainable, options.reuse_actors = legacy_trial, False
        search.checkpoint_config = lambda: tune.CheckpointConfig(  # type: ignore[assignment]
            num_to_keep=1, checkpoint_score_attribute="checkpoint_score"
        )
    try:
        outcome = run_search(parse_space(doc, source=f"bench:{name}", name=name), options)
    finally:
        search.checkpoint_config = restore  # type: ignore[assignment]
    if outcome.num_errors:
        raise RuntimeError(f"the {name} search failed; see {storage}")
    from tuner.results import read_epochs

    return read_epochs(outcome.experiment_dir)


def summarize(rows: Any) -> dict[str, float]:
    """Per-epoch blocking seconds and bytes of one run (epochs after the first: no warm-up)."""
    later = rows[rows["epoch"] > 1]
    blocking = later["checkpoint_s"] + later["report_s"]
    return {
        "epochs": len(rows),
        "cpu_epoch_s": float(rows["seconds"].mean()),
        "blocking_s_per_epoch": float(blocking.mean()),
        "checkpoint_s_per_epoch": float(later["checkpoint_s"].mean()),
        "report_s_per_epoch": float(later["report_s"].mean()),
        "bytes_per_epoch": float(rows["checkpoint_bytes"].fillna(0).mean()),
        "startup_s": float(rows["startup_s"].dropna().iloc[0]),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from ray import cloudpickle

    from data_pipeline import synthesize
    from tuner.training.checkpoints.policy import auto_every
    from tuner.tune.session import connect

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import bench/
    rates = [float(r) for r in args.tflops.split(",")]
    flops = gpu_epoch_flops()
    with tempfile.TemporaryDirectory(prefix="egotune-epoch-overhead-") as tmp:
        folder = Path(tmp)
        data = synthesize(folder / "data", **SYNTH).root  # type: ignore[arg-type]
        costs = checkpoint_costs(data, folder / "costs")
        gpu_epoch = {rate: flops["epoch_tflop"] / rate for rate in rates}
        every = auto_every(costs["snapshot_s"], costs["write_s"], gpu_epoch[rates[0]])
        connect(None, num_cpus=2, include_dashboard=False)
        old = summarize(run_policy("old", data, folder / "results", args.epochs, None))
        new = summarize(run_policy("new", data, folder / "results", args.epochs, every))
    new_bytes = (costs["state_bytes"] + costs["best_bytes"]) / every
    new_bytes += costs["final_best_bytes"] / TRIAL_EPOCHS
    new_overhead = new["report_s_per_epoch"] + costs["snapshot_s"] / every
    figures: dict[str, Any] = {
        "gpu_epoch_tflop": flops["epoch_tflop"],
        "checkpoint_every_at_gpu_pace": every,
        "old": old,
        "new": {**new, "gpu_pace_overhead_s": new_overhead, "gpu_pace_bytes_per_epoch": new_bytes},
        "costs": costs,
        "flops": flops,
    }
    for rate in rates:
        key = f"projected_share_{rate:g}"
        figures["old"][key] = _share(old["blocking_s_per_epoch"], gpu_epoch[rate])
        figures["new"][key] = _share(new_overhead, gpu_epoch[rate])
    return figures


def _share(overhead: float, gpu_epoch: float) -> float:
    return 100.0 * overhead / (overhead + gpu_epoch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs of each run (5)")
    parser.add_argument("--tflops", default="200,400", help="GPU throughputs, TFLOP/s (200,400)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-record", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    figures = measure(args)
    mib = 2**20
    headline: dict[str, Any] = {
        "gpu_epoch_tflop": round(figures["gpu_epoch_tflop"], 1),
        "checkpoint_every": figures["checkpoint_every_at_gpu_pace"],
    }
    for policy in ("old", "new"):
        shown = figures[policy]
        headline[f"{policy}_blocking_s"] = round(shown["blocking_s_per_epoch"], 3)
        headline[f"{policy}_startup_s"] = round(shown["startup_s"], 1)
        for key in [k for k in shown if k.startswith("projected_share_")]:
            headline[f"{policy}_{key}"] = round(shown[key], 1)
    headline["old_MiB_per_epoch"] = round(figures["old"]["bytes_per_epoch"] / mib, 1)
    headline["new_MiB_per_epoch_gpu_pace"] = round(
        figures["new"]["gpu_pace_bytes_per_epoch"] / mib, 1
    )
    headline["new_gpu_pace_overhead_s"] = round(figures["new"]["gpu_pace_overhead_s"], 4)
    return publish("epoch_overhead", headline, figures, args)


if __name__ == "__main__":
    sys.exit(main())
