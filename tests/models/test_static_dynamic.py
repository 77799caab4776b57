"""Static-dynamic discriminator: output, static clips, and where its gradient goes."""

from __future__ import annotations

import torch

from models import DYNAMIC, STATIC, set_stage_mode, static_clip
from tests.models.conftest import B, T, build_small


def _reached_by_discriminator(rgb: torch.Tensor, sd_train_conv5: bool) -> set[str]:
    model = build_small("ego_rnn_ms_sd", sd_train_conv5=sd_train_conv5)
    model.train()
    set_stage_mode(model, 2)
    model.discriminate(rgb).sum().backward()
    reached = [n for n, p in model.named_parameters() if p.grad is not None]
    return {"layer4" if ".layer4." in n else n.split(".")[0] for n in reached}


def test_discriminator_gives_two_logits_per_clip(rgb):
    model = build_small("ego_rnn_ms_sd").eval()
    with torch.no_grad():
        assert model.discriminate(rgb).shape == (B, 2)
    assert (DYNAMIC, STATIC) == (0, 1)


def test_by_default_its_gradient_reaches_only_the_convlstm_and_its_head(rgb):
    assert _reached_by_discriminator(rgb, sd_train_conv5=False) == {"lstm_cell", "sd_head"}


def test_with_sd_train_conv5_its_gradient_also_reaches_layer4(rgb):
    reached = _reached_by_discriminator(rgb, sd_train_conv5=True)
    assert {"lstm_cell", "sd_head", "layer4"} <= reached
    assert not {"classifier", "ms_head"} & reached


def test_static_clip_repeats_one_frame_of_the_same_sample(rgb):
    still = static_clip(rgb, generator=torch.Generator().manual_seed(0))
    assert still.shape == rgb.shape
    for b in range(B):
        assert all(torch.equal(still[b, t], still[b, 0]) for t in range(T))
        assert any(torch.equal(still[b, 0], rgb[b, t]) for t in range(T))
