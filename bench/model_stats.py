"""Parameter counts and forward FLOPs of every registered model at the report's settings.

Usage: ``egotune bench model_stats [--json] [--no-record]``
(or ``.venv/bin/python bench/model_stats.py``)

Each model is built with ``create_model(name)`` defaults (ResNet-34, 512-channel ConvLSTM,
61 classes, 224 px) on the meta device, so nothing is allocated or computed. The parameter count
is compared with a count derived here, independently of the code, from the architectures'
definitions (torchvision's ResNet layout, the ConvLSTM's eight 3x3 convolutions, the heads).
FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` for one clip: T = 7 RGB frames,
a stack of 5 flow frames (10 channels), or both for the two-stream model. The counter counts
matrix products and convolutions (2 FLOPs per multiply-add) and not element-wise operations.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

# run as a script from any folder: the repository root holds the models package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.record import record
from models import create_model, list_models

FRAMES, SIZE, CLASSES, MEM, FLOW_CHANNELS = 7, 224, 61, 512, 10
RESNET34_BLOCKS = (3, 4, 6, 3)


@dataclass
class ModelStats:
    name: str
    inputs: str
    params: int
    expected_params: int
    match: bool
    gflops: float
    gflops_by_part: dict[str, float]


# -- independent parameter formulas --------------------------------------------------------------


def conv(cin: int, cout: int, k: int, bias: bool = False) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def batchnorm(c: int) -> int:
    return 2 * c  # weight and bias; running statistics are buffers


def linear(fin: int, fout: int) -> int:
    return fin * fout + fout


def resnet34_trunk(in_channels: int = 3) -> int:
    """conv1 + bn1 + the four stages of BasicBlocks, without the FC."""
    total = conv(in_channels, 64, 7) + batchnorm(64)
    cin = 64
    for width, blocks in zip((64, 128, 256, 512), RESNET34_BLOCKS, strict=True):
        for _ in range(blocks):
            total += 2 * batchnorm(width) + conv(cin, width, 3) + conv(width, width, 3)
            if cin != width:  # first block of a stage that changes width: 1x1 shortcut + BN
                total += conv(cin, width, 1) + batchnorm(width)
            cin = width
    return total


def ms_head(channels: int, side: int) -> int:
    """ReLU, 1x1 conv to 100 channels, Linear(100 l², 2 l²) for classification."""
    return conv(channels, 100, 1, bias=True) + linear(100 * side * side, 2 * side * side)


def expected_params() -> dict[str, int]:
    """Expected parameter count per case label (see ``cases``)."""
    resnet34 = resnet34_trunk() + linear(512, 1000)  # torchvision: 21,797,672
    conv_lstm = 8 * MEM * MEM * 9 + 4 * MEM  # 4 input convs with bias, 4 hidden convs without
    ego_rnn = resnet34 + conv_lstm + linear(MEM, CLASSES)
    repflow = (
        conv(128, 32, 1)  # bottleneck
        + conv(64, 128, 1)  # expansion of the 2x32 flow channels
        + batchnorm(128)
        + 32 * (3 + 3 + 2 + 2 + 2 + 2)  # depthwise image-gradient, flow-gradient, divergence
        + 3  # theta, lambda, tau
    )
    flow = resnet34_trunk(FLOW_CHANNELS) + linear(512, CLASSES)
    return {
        "ego_rnn": ego_rnn,
        "ego_rnn_ms": ego_rnn + ms_head(512, 7),
        "ego_rnn_ms (ms_layer=conv4)": ego_rnn + ms_head(256, 14),
        "ego_rnn_ms (ms_layer=conv3)": ego_rnn + ms_head(128, 28),
        "ego_rnn_ms_sd": ego_rnn + ms_head(512, 7) + linear(MEM, 2),
        "ego_rnn_repflow": ego_rnn + repflow,
        "flow_resnet34": flow,
        "two_stream": ego_rnn + flow + linear(512 + MEM, CLASSES),
    }


# -- measurements ---------------------------------------------------------------------------------


def example_inputs(name: str) -> tuple[tuple[torch.Tensor, ...], str]:
    rgb = torch.empty(1, FRAMES, 3, SIZE, SIZE)
    flow = torch.empty(1, FLOW_CHANNELS, SIZE, SIZE)
    if name == "flow_resnet34":
        return (flow,), f"flow 1x{FLOW_CHANNELS}x{SIZE}x{SIZE}"
    if name == "two_stream":
        return (rgb, flow), f"rgb T={FRAMES} + flow {FLOW_CHANNELS} ch"
    return (rgb,), f"rgb T={FRAMES}, {SIZE} px"


def cases() -> list[tuple[str, str, dict[str, str]]]:
    """(label, model name, non-default keywords): every model, and the larger MS maps."""
    chosen: list[tuple[str, dict[str, str]]] = [(name, {}) for name in list_models()]
    chosen += [("ego_rnn_ms", {"ms_layer": "conv4"}), ("ego_rnn_ms", {"ms_layer": "conv3"})]
    labels = [n + "".join(f" ({k}={v})" for k, v in kw.items()) for n, kw in chosen]
    return [(label, n, kw) for label, (n, kw) in zip(labels, chosen, strict=True)]


def measure(label: str, name: str, kwargs: dict[str, str], expected: int) -> ModelStats:
    with torch.device("meta"):
        model = create_model(name, **kwargs).eval()
        inputs, described = example_inputs(name)
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(*inputs)
    parts = flops_by_part(counter, type(model).__name__)
    return ModelStats(
        name=label,
        inputs=described,
        params=params,
        expected_params=expected,
        match=params == expected,
        gflops=counter.get_total_flops() / 1e9,
        gflops_by_part={k: round(v, 2) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])},
    )


def flops_by_part(counter: FlopCounterMode, root: str) -> dict[str, float]:
    """GFLOPs per top-level submodule, summed over the innermost modules that ran the ops."""
    totals = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    keys = [k for k in totals if k.startswith(f"{root}.")]
    parts: dict[str, float] = {}
    for key in keys:
        if not any(other.startswith(f"{key}.") for other in keys):
            part = key.split(".")[1]
            parts[part] = parts.get(part, 0.0) + totals[key] / 1e9
    return parts


def markdown(rows: list[ModelStats]) -> str:
    lines = [
        "| model | input per clip | parameters | expected (formula) | match | GFLOPs "
        "| largest parts (GFLOPs) |",
        "|---|---|---:|---:|:---:|---:|---|",
    ]
    for r in rows:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in list(r.gflops_by_part.items())[:3])
        lines.append(
            f"| {r.name} | {r.inputs} | {r.params:,} | {r.expected_params:,} | "
            f"{'yes' if r.match else 'NO'} | {r.gflops:.2f} | {parts} |"
        )
    lines.append("")
    lines.append(
        f"ResNet-34 by formula: {resnet34_trunk() + linear(512, 1000):,} parameters; "
        f"torchvision's published count: {torchvision_resnet34_params():,}."
    )
    return "\n".join(lines)


def torchvision_resnet34_params() -> int:
    meta = torchvision.models.ResNet34_Weights.IMAGENET1K_V1.meta
    return int(meta["num_params"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument(
        "--no-record", action="store_true", help="do not write bench/results or bench/RESULTS.md"
    )
    args = parser.parse_args(argv)
    expected = expected_params()
    rows = [measure(label, name, kw, expected[label]) for label, name, kw in cases()]
    if not args.no_record:
        record(
            "model_stats",
            {r.name.replace(" ", ""): f"{r.gflops:.2f} GFLOPs/{r.params:,} params" for r in rows},
            details={"models": [asdict(r) for r in rows]},
        )
    if args.json:
        report = {
            "resnet34_formula": resnet34_trunk() + linear(512, 1000),
            "resnet34_torchvision": torchvision_resnet34_params(),
            "models": [asdict(r) for r in rows],
        }
        print(json.dumps(report, indent=2))
    else:
        print(markdown(rows))
    return 0 if all(r.match for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
