"""Motion segmentation: head sizes, per-sample/per-pixel alignment, and the loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import ms_loss
from tests.models.conftest import SIZE, B, T, build_small


@pytest.mark.parametrize(("layer", "side"), [("conv3", 8), ("conv4", 4), ("conv5", 2)])
@pytest.mark.parametrize(("task", "cls_dims"), [("classification", (2,)), ("regression", ())])
def test_ms_output_has_one_map_per_frame_at_the_tap_resolution(layer, side, task, cls_dims, rgb):
    model = build_small("ego_rnn_ms", ms_layer=layer, ms_task=task).eval()
    with torch.no_grad():
        ms = model(rgb)["ms"]
    assert ms.shape == (B, T, *cls_dims, side, side)


def test_ms_map_of_each_frame_comes_from_that_frame(rgb):
    """The (b, t) map equals the head applied to frame (b, t) alone, so no reshape mixed them."""
    model = build_small("ego_rnn_ms", ms_layer="conv4").eval()
    with torch.no_grad():
        ms = model(rgb)["ms"]
        for b in range(B):
            for t in range(T):
                alone = model.ms_head(model.backbone(rgb[b, t : t + 1]).conv4)[0]
                torch.testing.assert_close(ms[b, t], alone, rtol=1e-4, atol=1e-5)


def test_permuting_samples_and_frames_permutes_the_maps(rgb):
    model = build_small("ego_rnn_ms", ms_layer="conv5").eval()
    samples, frames = torch.tensor([1, 0]), torch.tensor([2, 0, 1])
    with torch.no_grad():
        ms = model(rgb)["ms"]
        shuffled = model(rgb[samples][:, frames])["ms"]
    torch.testing.assert_close(shuffled, ms[samples][:, frames], rtol=1e-4, atol=1e-5)


def test_frames_of_another_size_than_input_size_are_refused():
    model = build_small("ego_rnn_ms")
    with pytest.raises(ValueError, match="input_size=64"):
        model(torch.zeros(1, 2, 3, SIZE + 32, SIZE + 32))


def _pixelwise_ce(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed cell by cell with explicit indices."""
    total = torch.zeros(())
    b_, t_, _, h_, w_ = pred.shape
    for b in range(b_):
        for t in range(t_):
            for i in range(h_):
                for j in range(w_):
                    log_p = F.log_softmax(pred[b, t, :, i, j], dim=0)
                    total = total - log_p[int(target[b, t, i, j])]
    return total


def test_classification_loss_pairs_every_cell_with_its_own_target():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 3, 2, 4, 4, generator=g)
    target = (torch.rand(2, 3, 4, 4, generator=g) > 0.5).float()
    summed = _pixelwise_ce(pred, target)
    torch.testing.assert_close(ms_loss(pred, target, norm="pixel"), summed / (2 * 3 * 16))
    torch.testing.assert_close(ms_loss(pred, target, norm="frame_sum"), summed / (2 * 3))


def test_confident_correct_logits_give_a_near_zero_loss_that_a_sample_swap_breaks():
    g = torch.Generator().manual_seed(1)
    target = (torch.rand(2, 3, 4, 4, generator=g) > 0.5).float()
    pred = torch.stack([1 - target, target], dim=2) * 20 - 10  # (B, T, 2, l, l)
    assert ms_loss(pred, target) < 1e-4
    assert ms_loss(pred, target[[1, 0]]) > 1.0


def test_grey_targets_are_thresholded_at_one_half_for_classification():
    pred = torch.tensor([[[[[0.0]], [[5.0]]]]])  # (1, 1, 2, 1, 1): class 1 favoured
    assert ms_loss(pred, torch.full((1, 1, 1, 1), 0.6)) < ms_loss(
        pred, torch.full((1, 1, 1, 1), 0.4)
    )


def test_regression_loss_is_mse_per_pixel_or_per_frame():
    g = torch.Generator().manual_seed(2)
    pred, target = torch.randn(2, 3, 4, 4, generator=g), torch.rand(2, 3, 4, 4, generator=g)
    squared = ((pred - target) ** 2).sum()
    torch.testing.assert_close(ms_loss(pred, target, task="regression", norm="pixel"), squared / 96)
    torch.testing.assert_close(
        ms_loss(pred, target, task="regression", norm="frame_sum"), squared / 6
    )


def test_mismatched_shapes_and_unknown_options_are_errors():
    pred, target = torch.zeros(2, 3, 2, 4, 4), torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="does not match"):
        ms_loss(pred, target[:, :2])
    with pytest.raises(ValueError, match="norm"):
        ms_loss(pred, target, norm="mean")
    with pytest.raises(ValueError, match="ms_task"):
        ms_loss(pred, target, task="softmax")
