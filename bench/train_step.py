"""Training-step throughput, peak memory and FLOPs per clip of every model and stage.

Usage: ``egotune bench train_step [--full] [--plan] [--models M,...] [--frames 7,16,25]
[--batch N] [--crop S] [--precision fp32,bf16] [--steps N] [--peak-tflops X] [--json]
[--no-record]`` (or ``.venv/bin/python bench/train_step.py``)

One step is what the engine does per batch: the recipe's forward and loss (auxiliary losses
included), backward, and the optimiser step over the stage's trainable parameters, on random
inputs of the right shapes (random weights, 61 classes). For every model, stage and frame count
T, in ``fp32`` (eager) and ``bf16`` (autocast plus channels-last, as ``precision: bf16`` and
``channels_last: true`` train):

* clips/s over ``--steps`` timed steps after one untimed step;
* peak memory: on CUDA the allocator's peak (``torch.cuda.max_memory_allocated``) over the timed
  steps; everywhere the peak of live tensor bytes (parameters, inputs, activations kept for
  backward, gradients, optimiser state) seen during the untimed step;
* FLOPs per clip of forward plus backward (``torch.utils.flop_counter``: matrix products and
  convolutions, 2 per multiply-add; element-wise work is not counted), and on CUDA the achieved
  TFLOP/s and its fraction of the GPU's dense peak (``--peak-tflops`` or the table below; fp32
  is compared with the TF32 peak because cuDNN convolutions use TF32 by default).

Defaults: on CUDA batch 32 at 224 px, T in {7, 16, 25}, both precisions, 10 timed steps. On the
CPU batch 2 at 112 px in fp32 with 1 timed step (``--full`` for the GPU sizes). ``--plan`` runs
nothing: it counts each configuration's FLOPs and tensor memory on fake tensors (no compute),
which is how a CPU-only machine tells what a full run needs.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

# run as a script from any folder: the repository root holds the packages
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.record import record
from models import set_stage_mode, stage_param_groups
from tuner.training.config import MODEL_NAMES, TrainConfig, parse_overrides
from tuner.training.cost import example_batch
from tuner.training.recipes import build_model, recipe_for

CLASSES = 61
# Dense tensor-core peaks (TFLOP/s) from the vendors' data sheets: (bf16, tf32). Matched in order
# against torch.cuda.get_device_name(); pass --peak-tflops for anything else.
KNOWN_PEAKS = (
    ("H100 PCIe", (756.0, 378.0)),
    ("H100", (989.4, 494.7)),
    ("H200", (989.4, 494.7)),
    ("A100", (312.0, 156.0)),
    ("L40S", (362.1, 183.0)),
    ("L4", (121.0, 60.0)),
)


@dataclass(frozen=True)
class Case:
    model: str
    stage: int
    frames: int
    precision: str
    extra: tuple[tuple[str, Any], ...] = ()
    """Further configuration keys (``--set``), e.g. ``(("ms_layer", "conv4"),)``."""

    @property
    def name(self) -> str:
        """The model name, with the ``--set`` keys when there are any."""
        if not self.extra:
            return self.model
        return f"{self.model} ({', '.join(f'{k}={v}' for k, v in self.extra)})"

    @property
    def label(self) -> str:
        return f"{self.name} s{self.stage} T{self.frames} {self.precision}"


@dataclass
class Result:
    model: str
    stage: int
    frames: int
    precision: str
    batch: int
    crop: int
    device: str
    gflops_per_clip: float
    tensor_peak_mib: float
    clips_per_s: float | None = None
    step_ms: float | None = None
    allocator_peak_mib: float | None = None
    achieved_tflops: float | None = None
    peak_fraction: float | None = None
    error: str | None = None


class TensorPeak(TorchDispatchMode):
    """Peak bytes of live tensor storage while active, counting the given tensors as live.

    Every operator output's storage is counted once until Python frees it (a weak reference's
    callback), so the peak is what the step itself holds, independent of the allocator.
    """

    def __init__(self, already_live: Iterator[torch.Tensor]) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: dict[int, weakref.ref] = {}
        for tensor in already_live:
            self._count(tensor)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self._count(leaf)
        return out

    def _count(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self._live:
            return
        size = storage.nbytes()

        def freed(_: object, key: int = key, size: int = size) -> None:
            self.current -= size
            self._live.pop(key, None)

        self._live[key] = weakref.ref(storage, freed)
        self.current += size
        self.peak = max(self.peak, self.current)


# -- one configuration ------------------------------------------------------------------------


def config_for(case: Case, batch: int, crop: int) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "model": case.model,
            "stage": str(case.stage),
            "frames": case.frames,
            "batch_size": batch,
            "crop_size": crop,
            "weights": "none",
            "precision": case.precision,
            "channels_last": case.precision == "bf16",
            **dict(case.extra),
        }
    )


def make_step(cfg: TrainConfig, device: torch.device) -> tuple[Callable[[], None], list]:
    """The engine's training step for ``cfg`` and the tensors it starts with."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # two-stream branches without checkpoints
        model = build_model(cfg, CLASSES)
    if device.type != "cpu":
        model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    stage = int(cfg.stage)
    model.train()
    set_stage_mode(model, stage)
    params = [p for g in stage_param_groups(model, stage) for p in g["params"] if p.requires_grad]
    settings = cfg.stage_settings(stage)
    if settings.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    else:
        optimizer = torch.optim.Adam(params, lr=1e-4, eps=1e-4)
    batch = example_batch(cfg, CLASSES, cfg.batch_size, device)
    family = recipe_for(cfg.model)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if cfg.precision == "bf16"
        else nullcontext()
    )

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            out = family.step(model, batch, cfg, stage, True)
        out.loss.backward()
        optimizer.step()

    live = [*model.parameters(), *model.buffers(), *batch.values()]
    return step, live


def account(step: Callable[[], None], live: list, batch: int) -> tuple[float, float]:
    """GFLOPs per clip and peak tensor MiB of one step."""
    peak = TensorPeak(iter(live))
    with FlopCounterMode(display=False) as flops, peak:
        step()
    return flops.get_total_flops() / batch / 1e9, peak.peak / 2**20


def plan(case: Case, batch: int, crop: int) -> Result:
    """FLOPs and tensor memory of a configuration counted on fake tensors: nothing computed."""
    cfg = config_for(case, batch, crop)
    with FakeTensorMode():
        step, live = make_step(cfg, torch.device("cpu"))
        gflops, mib = account(step, live, batch)
    return Result(
        case.name, case.stage, case.frames, case.precision, batch, crop, "fake", gflops, mib
    )


def measure(
    case: Case, batch: int, crop: int, steps: int, device: torch.device, peak: float | None
) -> Result:
    cfg = config_for(case, batch, crop)
    step, live = make_step(cfg, device)
    gflops, mib = account(step, live, batch)
    result = Result(
        case.name, case.stage, case.frames, case.precision, batch, crop, str(device), gflops, mib
    )
    if steps == 0:  # memory and FLOPs only
        return result
    if device.type == "cuda":
        step()  # one step outside the counting modes before the clock starts
    with _synchronised(device):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
    seconds = time.perf_counter() - start
    result.step_ms = 1000 * seconds / steps
    result.clips_per_s = batch * steps / seconds
    if device.type == "cuda":
        result.allocator_peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
        result.achieved_tflops = gflops * result.clips_per_s / 1000
        if peak:
            result.peak_fraction = result.achieved_tflops / peak
    return result


@contextmanager
def _synchronised(device: torch.device) -> Iterator[None]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- the run ----------------------------------------------------------------------------------


def stages_of(model: str) -> tuple[int, ...]:
    return (1, 2) if recipe_for(model).staged else (1,)


def cases_for(
    models: list[str],
    frames: list[int],
    precisions: list[str],
    extra: tuple[tuple[str, Any], ...] = (),
) -> list[Case]:
    """Every model, stage, T and precision; the flow network reads no RGB frames, so one T."""
    cases = []
    for model in models:
        counts = frames if "rgb" in recipe_for(model).modalities else frames[:1]
        for stage in stages_of(model):
            for t in counts:
                cases += [Case(model, stage, t, p, extra) for p in precisions]
    return cases


def peak_tflops(device: torch.device, precision: str, given: float | None) -> float | None:
    if given or device.type != "cuda":
        return given
    name = torch.cuda.get_device_name(device)
    for key, (bf16, tf32) in KNOWN_PEAKS:
        if key in name:
            return bf16 if precision == "bf16" else tf32
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="GPU sizes (batch 32, 224 px) anywhere")
    parser.add_argument("--plan", action="store_true", help="count FLOPs and memory, run nothing")
    parser.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated names")
    parser.add_argument("--frames", default="7,16,25", help="frame counts T, comma-separated")
    parser.add_argument("--batch", type=int, help="clips per batch (CUDA/--full 32, CPU 2)")
    parser.add_argument("--crop", type=int, help="crop side in pixels (CUDA/--full 224, CPU 112)")
    parser.add_argument("--precision", help="fp32,bf16 (default both on CUDA, fp32 on the CPU)")
    parser.add_argument(
        "--steps", type=int, help="timed steps per case (CUDA 10, CPU 1; 0: memory and FLOPs only)"
    )
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense peak for the fraction")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a further configuration key for every case, e.g. --set ms_layer=conv4",
    )
    parser.add_argument(
        "--no-record", action="store_true", help="do not write bench/results or bench/RESULTS.md"
    )
    return parser.parse_args(argv)


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """Resolved sizes: the GPU sizes on CUDA or with --full, small ones on the CPU."""
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    large = device.type == "cuda" or args.full
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODEL_NAMES))
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; choose from {', '.join(MODEL_NAMES)}")
    return {
        "device": device,
        "models": models,
        "frames": [int(t) for t in args.frames.split(",")],
        "batch": args.batch or (32 if large else 2),
        "crop": args.crop or (224 if large else 112),
        "precisions": (args.precision or ("fp32,bf16" if device.type == "cuda" else "fp32")).split(
            ","
        ),
        "steps": args.steps if args.steps is not None else (10 if device.type == "cuda" else 1),
        "extra": _extra_settings(args.overrides),
    }


def _extra_settings(items: list[str]) -> tuple[tuple[str, Any], ...]:
    try:
        values = parse_overrides(items)
        TrainConfig.from_dict(values)
    except ValueError as exc:
        raise SystemExit(f"--set {exc}") from None
    return tuple(sorted(values.items()))


def markdown(results: list[Result]) -> str:
    lines = [
        "| model | stage | T | precision | clips/s | step ms | tensor peak MiB "
        "| allocator peak MiB | GFLOPs/clip | TFLOP/s | of peak |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cells = [
            _num(r.clips_per_s, 2),
            _num(r.step_ms, 0),
            _num(r.tensor_peak_mib, 0),
            _num(r.allocator_peak_mib, 0),
            _num(r.gflops_per_clip, 1),
            _num(r.achieved_tflops, 1),
            "" if r.peak_fraction is None else f"{100 * r.peak_fraction:.0f} %",
        ]
        if r.error:
            cells[0] = r.error
        lines.append(
            f"| {r.model} | {r.stage} | {r.frames} | {r.precision} | {' | '.join(cells)} |"
        )
    return "\n".join(lines)


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def run_case(case: Case, opts: dict[str, Any], given_peak: float | None) -> Result:
    device = opts["device"]
    peak = peak_tflops(device, case.precision, given_peak)
    print(f"  {case.label} ...", file=sys.stderr, flush=True)
    try:
        return measure(case, opts["batch"], opts["crop"], opts["steps"], device, peak)
    except torch.OutOfMemoryError:
        pass  # the step's tensors go with the traceback, at the end of this block
    gc.collect()
    torch.cuda.empty_cache()
    nan = float("nan")
    return Result(
        case.name,
        case.stage,
        case.frames,
        case.precision,
        opts["batch"],
        opts["crop"],
        str(device),
        nan,
        nan,
        error="out of memory",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opts = settings(args)
    cases = cases_for(opts["models"], opts["frames"], opts["precisions"], opts["extra"])
    device = opts["device"]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{len(cases)} configurations, batch {opts['batch']} at {opts['crop']} px on {where}"
        + (" (counted on fake tensors, nothing computed)" if args.plan else ""),
        file=sys.stderr,
    )
    if device.type != "cuda" and not args.full and not args.plan:
        print(
            "GPU sizes: `egotune bench train_step --plan --full` prints the memory each "
            "configuration needs at batch 32 and 224 px; run without flags on a CUDA machine.",
            file=sys.stderr,
        )
    torch.manual_seed(0)
    if args.plan:  # fp32 only: fake CPU tensors cannot stand for CUDA autocast
        results = [plan(c, opts["batch"], opts["crop"]) for c in cases if c.precision == "fp32"]
    else:
        results = [run_case(c, opts, args.peak_tflops) for c in cases]
    if not args.no_record:
        record(
            "train_step_plan" if args.plan else "train_step",
            figures(results, opts),
            details={"results": [asdict(r) for r in results], "steps": opts["steps"]},
        )
    print(json.dumps([asdict(r) for r in results], indent=2) if args.json else markdown(results))
    return 1 if any(r.error for r in results) else 0


def figures(results: list[Result], opts: dict[str, Any]) -> dict[str, str]:
    """One entry per model, stage and precision: throughput and memory at each T."""
    planned = all(r.device == "fake" for r in results)
    shown: dict[str, str] = {
        "device": "none (fake tensors)" if planned else str(opts["device"]),
        "batch": str(opts["batch"]),
        "crop": str(opts["crop"]),
    }
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(f"{r.model}/s{r.stage}/{r.precision}", []).append(r)
    for key, rows in groups.items():
        parts = []
        for r in rows:
            memory = r.allocator_peak_mib or r.tensor_peak_mib
            speed = f"{r.clips_per_s:.3g} clips/s " if r.clips_per_s else ""
            parts.append(f"T{r.frames} {speed}{memory:.0f} MiB {r.gflops_per_clip:.0f} GFLOP")
        shown[key] = ", ".join(parts)
    return shown


if __name__ == "__main__":
    sys.exit(main())
