"""Clip transforms of the Ego-RNN pipeline, with one random draw shared by every modality.

Training: Scale (smaller edge to ``scale_size``), RandomHorizontalFlip (x-flow is also inverted,
255 - v, because mirroring reverses horizontal motion), MultiScaleCornerCrop (a square of side
``int(min(W, H) * scale)`` at the centre or a corner, resized to ``crop_size``), in that order.
Evaluation: Scale, then the centre ``crop_size`` square. The geometric steps are torchvision's
functional ops; only their parameters are drawn here, once per clip, from the caller's generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as nnf
from torchvision.transforms.v2 import functional as tvf

__all__ = [
    "CORNERS",
    "FLOW_MEAN",
    "FLOW_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SCALES",
    "ClipTransform",
    "CropParams",
    "downsample_mmaps",
    "normalize_flow",
    "normalize_rgb",
]

SCALES = (1.0, 0.875, 0.75, 0.65625)
CORNERS = ("c", "tl", "tr", "bl", "br")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FLOW_MEAN = 0.449
"""Mean of the ImageNet means: the scalar the Ego-RNN flow loaders normalise with."""
FLOW_STD = 0.226


@dataclass(frozen=True)
class CropParams:
    """One clip's random augmentation."""

    flip: bool
    scale: float
    """Fraction of the smaller image edge that the square crop keeps."""
    corner: str
    """``c`` (centre), ``tl``, ``tr``, ``bl`` or ``br``."""


class ClipTransform:
    """Geometric transform of a clip; ``draw`` the parameters once and ``apply`` them to every
    modality of the clip.

    ``scale_size`` (default ``round(crop_size * 256 / 224)``, 256 for 224) is the smaller image
    edge after Scale, so small CPU crops do not first decode-and-crop full-size frames.
    """

    def __init__(self, *, train: bool, crop_size: int = 224, scale_size: int | None = None):
        if crop_size < 1:
            raise ValueError(f"crop_size: must be >= 1, got {crop_size}")
        self.train = train
        self.crop_size = crop_size
        self.scale_size = scale_size if scale_size is not None else round(crop_size * 256 / 224)
        if self.scale_size < crop_size:
            raise ValueError(f"scale_size: must be >= crop_size {crop_size}, got {scale_size}")

    def draw(self, rng: np.random.Generator) -> CropParams | None:
        """Parameters of one clip; None in evaluation (centre crop).

        The generator advances by the same three draws either way, so later draws of an item do
        not depend on the mode.
        """
        flip = bool(rng.random() < 0.5)
        scale = SCALES[int(rng.integers(len(SCALES)))]
        corner = CORNERS[int(rng.integers(len(CORNERS)))]
        return CropParams(flip, scale, corner) if self.train else None

    def apply(
        self, frames: torch.Tensor, params: CropParams | None, *, invert_on_flip: bool = False
    ) -> torch.Tensor:
        """uint8 ``(N, C, H, W)`` -> uint8 ``(N, C, crop_size, crop_size)``.

        ``invert_on_flip`` marks x-flow, whose values are mirrored (255 - v) with the image.
        """
        frames = self._scale(frames)
        size = [self.crop_size, self.crop_size]
        if params is None:
            return tvf.center_crop(frames, size)
        if params.flip:
            frames = tvf.horizontal_flip(frames)
            if invert_on_flip:
                frames = 255 - frames
        height, width = frames.shape[-2:]
        top, left, side = corner_box(height, width, params)
        return tvf.resized_crop(frames, top, left, side, side, size, antialias=True)

    def _scale(self, frames: torch.Tensor) -> torch.Tensor:
        if min(frames.shape[-2:]) == self.scale_size:
            return frames
        return tvf.resize(frames, [self.scale_size], antialias=True)


def corner_box(height: int, width: int, params: CropParams) -> tuple[int, int, int]:
    """``(top, left, side)`` of the square crop on an image of the given size."""
    side = int(min(width, height) * params.scale)
    tops = {
        "c": height // 2 - side // 2,
        "tl": 0,
        "tr": 0,
        "bl": height - side,
        "br": height - side,
    }
    lefts = {"c": width // 2 - side // 2, "tl": 0, "tr": width - side, "bl": 0, "br": width - side}
    return tops[params.corner], lefts[params.corner], side


def normalize_rgb(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., 3, H, W)`` -> float32 ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (frames.float() / 255 - mean) / std


def normalize_flow(frames: torch.Tensor) -> torch.Tensor:
    """uint8 flow -> float32 normalised with the scalar flow mean and std."""
    return (frames.float() / 255 - FLOW_MEAN) / FLOW_STD


def downsample_mmaps(maps: torch.Tensor, size: int, method: str, target: str) -> torch.Tensor:
    """Motion maps uint8 ``(T, 1, S, S)`` -> float32 targets ``(T, size, size)``.

    ``point`` reads the map at the centre of each of the ``size x size`` cells; ``grid`` (the
    grid technique) averages each cell (adaptive pooling, so S need not be a multiple of size).
    ``binary`` thresholds (point value > 0.5, cell mean >= 0.5); ``gray`` keeps values in [0, 1].
    """
    if method not in ("point", "grid"):
        raise ValueError(f"mmap_downsample: 'point' or 'grid', got {method!r}")
    if target not in ("binary", "gray"):
        raise ValueError(f"mmap_target: 'binary' or 'gray', got {target!r}")
    values = maps.float() / 255
    if method == "grid":
        cells = nnf.adaptive_avg_pool2d(values, size).squeeze(1)  # (T, size, size)
        return (cells >= 0.5).float() if target == "binary" else cells
    side = values.shape[-1]
    centres = ((torch.arange(size) + 0.5) * side / size).long()
    points = values[:, 0][:, centres][:, :, centres]  # (T, size, size)
    return (points > 0.5).float() if target == "binary" else points
