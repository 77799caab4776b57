"""Representation flow: T-1 outputs, and TV-L1 iterations that recover a known motion."""

from __future__ import annotations

import pytest
import torch

from models import RepresentationFlow, TVL1Flow
from tests.models.conftest import CLASSES, B, build_small


def _pattern(shift_x: float, shift_y: float, size: int = 24) -> torch.Tensor:
    """A smooth (1, 1, size, size) image in [27.5, 227.5] moved by (shift_x, shift_y) pixels."""
    grid = torch.arange(size, dtype=torch.float32)
    y, x = torch.meshgrid(grid, grid, indexing="ij")
    image = 127.5 + 100 * torch.sin((x - shift_x) / 3) * torch.cos((y - shift_y) / 4)
    return image[None, None]


@pytest.mark.parametrize(("dx", "dy"), [(1, 0), (-1, 0), (0, 1), (0, -1)])
def test_tvl1_recovers_a_one_pixel_shift(dx, dy):
    with torch.no_grad():
        u1, u2 = TVL1Flow(channels=1, iterations=10)(_pattern(0, 0), _pattern(dx, dy))
    inner = (..., slice(4, -4), slice(4, -4))  # away from the image border
    assert u1[inner].mean().item() == pytest.approx(dx, abs=0.15)
    assert u2[inner].mean().item() == pytest.approx(dy, abs=0.15)


def test_identical_frames_give_no_flow():
    image = _pattern(0, 0)
    with torch.no_grad():
        u1, u2 = TVL1Flow(channels=1)(image, image)
    assert u1.abs().max() < 1e-4
    assert u2.abs().max() < 1e-4


def test_layer_outputs_one_time_step_fewer():
    layer = RepresentationFlow(channels=16, bottleneck=8, iterations=3)
    assert layer(torch.randn(2, 16, 5, 6, 6)).shape == (2, 16, 4, 6, 6)


def test_layer_needs_two_time_steps():
    with pytest.raises(ValueError, match="2 time steps"):
        RepresentationFlow(channels=16)(torch.randn(1, 16, 1, 6, 6))


def test_model_runs_the_convlstm_over_t_minus_one_flow_steps(rgb):
    model = build_small("ego_rnn_repflow", repflow_iters=2).eval()
    seen = []
    model.lstm_cell.register_forward_hook(lambda *_: seen.append(1))
    with torch.no_grad():
        out = model(rgb)
    assert len(seen) == rgb.shape[1] - 1
    assert out["logits"].shape == (B, CLASSES)


def test_tvl1_iterates_in_float32_under_bf16_autocast():
    layer = RepresentationFlow(channels=16, bottleneck=8, iterations=2)
    seen = []
    layer.tvl1.register_forward_pre_hook(lambda _, args: seen.append(args[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(torch.randn(1, 16, 3, 6, 6))
    assert seen == [torch.float32]
    assert torch.isfinite(out).all()
