"""Checks the commands run before any work: ImageNet weights that a run will ask for, and the
size of the checkpoints it will write.

A run whose backbone starts from ImageNet loads torchvision's file from the torch hub cache,
downloading it when online. Without it, ``egotune train`` would stop inside the model's
constructor and a local search would fail every trial inside Ray; checked here first, it is one
line naming the file to provide.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["require_imagenet_weights", "state_bytes"]

_IMAGENET = ("imagenet", "imagenet1k_v1")
_DEFAULTS = {"weights": "imagenet", "backbone": "resnet34"}


def require_imagenet_weights(configs: Iterable[Mapping[str, Any]]) -> None:
    """Make sure the ImageNet weights of every backbone ``configs`` start from are in the cache.

    Each config is a flat mapping of TrainConfig keys (missing keys take their defaults).
    Downloads what is missing when online; raises ``models.WeightsUnavailableError`` otherwise.
    """
    arches = {
        str(config.get("backbone", _DEFAULTS["backbone"]))
        for config in configs
        if str(config.get("weights", _DEFAULTS["weights"])).lower() in _IMAGENET
    }
    if not arches:
        return
    from models import ResNetBackbone, imagenet_cache_file

    for arch in sorted(arches):
        cache = imagenet_cache_file(arch)
        if cache.is_file():
            continue
        # torch.hub announces the download on stdout; when it fails, the error says it all.
        with contextlib.redirect_stdout(io.StringIO()):
            ResNetBackbone(arch, "imagenet")  # loads them, as a trial would
        print(f"egotune: downloaded the ImageNet weights of {arch} to {cache}", file=sys.stderr)


def state_bytes(configs: Iterable[Mapping[str, Any]], num_classes: int) -> int:
    """An upper bound of the largest resume state the trials of ``configs`` write, in bytes.

    A state holds the model's parameters and buffers and, at most, two Adam moments per
    parameter. Each distinct model is built on PyTorch's ``meta`` device (shapes only, no memory,
    no weights loaded), so the bound costs milliseconds. Configs are flat space cells (missing keys
    take their defaults).
    """
    import torch

    from tuner.config import TrainConfig
    from tuner.recipes import build_model, recipe_for
    from tuner.spaces import nest_config

    sizes: dict[str, int] = {}
    for config in configs:
        cfg = TrainConfig.from_dict(nest_config(config)).replace(
            weights="none", init_checkpoint=None, rgb_checkpoint=None, flow_checkpoint=None
        )
        # A grid varies training settings far more often than the model: build each model once.
        kwargs = recipe_for(cfg.model).model_kwargs(cfg, num_classes)
        key = repr((cfg.model, cfg.backbone, cfg.mem_size, sorted(kwargs.items())))
        if key in sizes:
            continue
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "two-stream branch starts untrained"
            model = build_model(cfg, num_classes)
        parameters = sum(p.numel() * p.element_size() for p in model.parameters())
        buffers = sum(b.numel() * b.element_size() for b in model.buffers())
        sizes[key] = 3 * parameters + buffers
    return max(sizes.values(), default=0)
