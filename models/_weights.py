"""Where backbone weights come from: torchvision's ImageNet files, a local file, or nowhere.

``weights`` is the same argument everywhere in :mod:`models`:

* ``None`` or ``"none"``: random initialisation;
* ``"imagenet"``: torchvision's ``IMAGENET1K_V1`` state dict through the torch hub cache
  (``$TORCH_HOME/hub/checkpoints/<file>``); offline, the file must already be there;
* any other string or path: a local file read with ``torch.load(weights_only=True)``.

Reading weight files is the only file I/O of the package.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor

__all__ = ["Weights", "WeightsUnavailableError", "load_state_dict_file", "resolve_weights"]

Weights = str | os.PathLike[str] | None
_IMAGENET_NAMES = ("imagenet", "imagenet1k_v1")


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights were asked for but cannot be read from the cache or downloaded."""


def resolve_weights(arch: str, weights: Weights) -> dict[str, Tensor] | None:
    """The state dict ``weights`` designates for the torchvision ResNet ``arch``, or ``None``."""
    if weights is None:
        return None
    if isinstance(weights, str) and weights.lower() == "none":
        return None
    if isinstance(weights, str) and weights.lower() in _IMAGENET_NAMES:
        return _imagenet_state_dict(arch)
    return load_state_dict_file(weights)


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Tensors of a state dict saved with ``torch.save``, read on the CPU with ``weights_only``.

    A checkpoint that wraps the state dict under ``"state_dict"`` or ``"model"`` is unwrapped.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"weights={str(path)!r}: no such file (use None, 'imagenet' or a state-dict file)"
        )
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = re.search(r"GLOBAL (\S+)", str(exc))
        detail = f" (it imports {blocked.group(1)})" if blocked else ""
        raise ValueError(
            f"weights={str(path)!r}: refused to load: the file holds pickled objects other than "
            f"tensors{detail}; save a plain state dict instead"
        ) from None
    except (RuntimeError, EOFError) as exc:
        raise ValueError(
            f"weights={str(path)!r}: cannot read the file ({type(exc).__name__}); it is not a "
            "torch.save state dict or it is truncated"
        ) from None
    return as_state_dict(state, str(path))


def as_state_dict(obj: Any, origin: str) -> dict[str, Tensor]:
    """``obj`` as a flat ``{name: tensor}`` dict; ``origin`` names it in the error message."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{origin}: expected a state dict mapping names to tensors")
    return dict(obj)


def imagenet_cache_file(arch: str) -> Path:
    """The file torchvision reads (or downloads to) for ``arch``'s ImageNet weights."""
    url = _imagenet_enum(arch).url
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    return checkpoints / os.path.basename(urlparse(url).path)


def _imagenet_enum(arch: str) -> Any:
    depth = arch.removeprefix("resnet")
    return getattr(torchvision.models, f"ResNet{depth}_Weights").IMAGENET1K_V1


def _imagenet_state_dict(arch: str) -> dict[str, Tensor]:
    try:
        state = _imagenet_enum(arch).get_state_dict(progress=False, weights_only=True)
    except (OSError, RuntimeError) as exc:
        cache = imagenet_cache_file(arch)
        raise WeightsUnavailableError(
            f"ImageNet weights for {arch} are not available offline ({exc}). Either place "
            f"torchvision's file {cache.name} at {cache} (the torch hub cache, under "
            f"$TORCH_HOME/hub/checkpoints), or pass weights=PATH to a local state-dict file "
            f"(weights=None trains from scratch)."
        ) from exc
    return as_state_dict(state, f"{arch} ImageNet weights")
