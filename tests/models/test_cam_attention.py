"""CAM spatial attention: the winning class's map, softmax over positions, on no-BN features."""

from __future__ import annotations

import torch

from models import CamAttention
from tests.models.conftest import build_small


def _inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 10, generator=g)
    bn, nobn = torch.randn(4, 6, 3, 3, generator=g), torch.randn(4, 6, 3, 3, generator=g)
    return logits, bn, nobn, torch.randn(10, 6, generator=g)


def test_attention_map_sums_to_one_over_positions():
    _, attention = CamAttention()(*_inputs())
    assert attention.shape == (4, 3, 3)
    assert (attention > 0).all()
    torch.testing.assert_close(attention.sum(dim=(1, 2)), torch.ones(4))


def test_map_uses_the_winning_class_row_on_bn_features_and_weighs_nobn_features():
    logits, bn, nobn, weights = _inputs()
    attended, attention = CamAttention()(logits, bn, nobn, weights)
    for n in range(4):
        row = weights[logits[n].argmax()]
        cam = (row[:, None, None] * bn[n]).sum(0)
        expected = torch.softmax(cam.flatten(), 0).view(3, 3)
        torch.testing.assert_close(attention[n], expected)
        torch.testing.assert_close(attended[n], nobn[n] * expected)


def test_class_choice_passes_no_gradient_to_the_logits():
    logits, bn, nobn, weights = _inputs()
    logits.requires_grad_(True)
    weights.requires_grad_(True)
    attended, _ = CamAttention()(logits, bn, nobn, weights)
    attended.sum().backward()
    assert logits.grad is None
    assert weights.grad is not None


def test_without_cam_the_convlstm_reads_the_nobn_features(rgb):
    model = build_small("ego_rnn", cam=False).eval()
    taps = model.backbone(rgb.flatten(0, 1))
    assert model.attention is None
    assert torch.equal(model.attend(taps), taps.conv5_nobn)
