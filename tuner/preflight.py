"""Checks the commands run before any work: ImageNet weights that a run will ask for.

A run whose backbone starts from ImageNet loads torchvision's file from the torch hub cache,
downloading it when online. Without it, ``egotune train`` would stop inside the model's
constructor and a local search would fail every trial inside Ray; checked here first, it is one
line naming the file to provide.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["require_imagenet_weights"]

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
