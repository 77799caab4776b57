"""Backbone weights: a local file, torchvision's cache, none, and a clear offline error."""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from models import ResNetBackbone, WeightsUnavailableError, create_model

RESNET18_FILE = os.path.basename(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url)


def _imagenet_like_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    return torchvision.models.resnet18(weights=None).state_dict()


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty TORCH_HOME in which every download fails."""

    def refuse(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(f"no network for {url}")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return tmp_path


def _assert_same_weights(backbone: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = backbone.state_dict()
    assert own.keys() == state.keys()
    assert all(torch.equal(own[k], state[k]) for k in state)


def test_weights_load_from_a_local_file(tmp_path):
    state = _imagenet_like_state()
    torch.save(state, tmp_path / "resnet18.pth")
    model = create_model("ego_rnn", backbone="resnet18", weights=str(tmp_path / "resnet18.pth"))
    _assert_same_weights(model.backbone, state)


def test_a_checkpoint_wrapping_the_state_dict_is_unwrapped(tmp_path):
    state = _imagenet_like_state()
    torch.save({"state_dict": state, "epoch": torch.tensor(3)}, tmp_path / "wrapped.pth")
    _assert_same_weights(ResNetBackbone("resnet18", weights=tmp_path / "wrapped.pth"), state)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth"):
        ResNetBackbone("resnet18", weights=str(tmp_path / "nowhere.pth"))


def test_imagenet_weights_come_from_the_torch_hub_cache(offline_hub):
    state = _imagenet_like_state()
    checkpoints = offline_hub / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(state, checkpoints / RESNET18_FILE)
    _assert_same_weights(ResNetBackbone("resnet18", weights="imagenet"), state)


def test_offline_imagenet_error_names_the_cache_file_and_the_local_file_option(offline_hub):
    expected = offline_hub / "hub" / "checkpoints" / RESNET18_FILE
    with pytest.raises(WeightsUnavailableError) as info:
        ResNetBackbone("resnet18", weights="imagenet")
    message = str(info.value)
    assert str(expected) in message
    assert "weights=PATH" in message


@pytest.mark.parametrize("weights", [None, "none", "None"])
def test_no_weights_means_random_initialisation(weights, offline_hub):
    torch.manual_seed(0)
    first = ResNetBackbone("resnet18", weights=weights)
    second = ResNetBackbone("resnet18", weights=weights)
    assert not torch.equal(first.conv1.weight, second.conv1.weight)
