"""Clip transforms of the Ego-RNN pipeline, with one random draw shared by every modality.

Training: Scale (smaller edge to ``scale_size``), RandomHorizontalFlip (x-flow is also inverted,
255 - v, because mirroring reverses horizontal motion), MultiScaleCornerCrop (a square of side
``int(min(W, H) * scale)`` at the centre or a corner, resized to ``crop_size``), in that order.
Evaluation: Scale, then the centre ``crop_size`` square. The geometric steps compute what
torchvision's functional ops (``resize``, ``horizontal_flip``, ``resized_crop``) compute, in an
order that copies fewer pixels; only their parameters are drawn here, once per clip, from the
caller's generator. The final resize can run later, on a whole batch (:class:`BatchFinisher`).
"""

from __future__ import annotations

import functools
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
    "default_scale_size",
    "downsample_mmaps",
    "normalize_flow",
    "normalize_rgb",
    "resize_square",
    "scale_frames",
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
        self.scale_size = scale_size if scale_size is not None else default_scale_size(crop_size)
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
        return self.resize(self.cut(frames, params, invert_on_flip=invert_on_flip))

    def cut(
        self, frames: torch.Tensor, params: CropParams | None, *, invert_on_flip: bool = False
    ) -> torch.Tensor:
        """Every step but the final resize: uint8 ``(N, C, side, side)``.

        Training flips the whole image and then cuts the corner box; cutting the mirrored box
        and flipping only the cut gives the same pixels while copying a fraction of them.
        Evaluation returns the centre ``crop_size`` square, which needs no resize.
        """
        frames = self.scale(frames)
        if params is None:
            return tvf.center_crop(frames, [self.crop_size, self.crop_size])
        height, width = frames.shape[-2:]
        top, left, side = corner_box(height, width, params)
        if not params.flip:
            return frames[..., top : top + side, left : left + side]
        left = width - left - side  # the box in the unflipped image
        cut = frames[..., top : top + side, left : left + side].flip(-1)
        return 255 - cut if invert_on_flip else cut

    def resize(self, cut: torch.Tensor) -> torch.Tensor:
        """Square cuts ``(N, C, side, side)`` -> ``(N, C, crop_size, crop_size)``."""
        return resize_square(cut, self.crop_size)

    def scale(self, frames: torch.Tensor) -> torch.Tensor:
        """Resize so the smaller edge is ``scale_size`` (unchanged when it already is)."""
        return scale_frames(frames, self.scale_size)


def default_scale_size(crop_size: int) -> int:
    """The Scale step's smaller edge for a crop: 256 for the report's 224."""
    return round(crop_size * 256 / 224)


def scale_frames(frames: torch.Tensor, scale_size: int) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` with the smaller edge resized to ``scale_size`` (antialiased
    bilinear). The decoded-frame store calls this too, so its frames equal the PNG path's."""
    if min(frames.shape[-2:]) == scale_size:
        return frames
    return tvf.resize(frames, [scale_size], antialias=True)


def resize_square(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased bilinear resize of square images ``(N, C, s, s)`` to ``size``.

    On the CPU uint8 in, uint8 out: torch's integer kernel, which is what
    ``torchvision.transforms.v2.functional.resized_crop`` runs, fastest on channels-last input.
    Elsewhere (CUDA has no integer kernel) float values rounded to integers, which differ from
    the CPU result by at most 1 in a few pixels. Same-size input is returned as is.
    """
    if frames.shape[-1] == size and frames.shape[-2] == size:
        return frames
    if frames.device.type == "cpu" and frames.dtype == torch.uint8:
        if frames.shape[-3] > 1 and frames.stride(-3) != 1:
            frames = frames.contiguous(memory_format=torch.channels_last)  # 3x faster kernel
        return nnf.interpolate(frames, size=(size, size), mode="bilinear", antialias=True)
    resized = nnf.interpolate(frames.float(), size=(size, size), mode="bilinear", antialias=True)
    return resized.round_().clamp_(0, 255)


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
    """uint8 (or integer-valued float) ``(..., 3, H, W)`` -> float32 ImageNet-normalised,
    ``(x / 255 - mean) / std`` computed as one multiply and one add, in the input's memory
    layout (channels-last frames stay channels-last: no transposition pass)."""
    values = frames.to(torch.float32, copy=True)
    scale, shift = _rgb_affine(*values.shape[-2:], values.device, _channels_last(values))
    return values.mul_(scale).add_(shift)


def normalize_flow(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (or integer-valued float) flow -> float32 normalised with the scalar flow mean and
    std."""
    values = frames.to(torch.float32, copy=True)
    return values.mul_(1 / (255 * FLOW_STD)).add_(-FLOW_MEAN / FLOW_STD)


def _channels_last(frames: torch.Tensor) -> bool:
    return frames.dim() >= 3 and frames.stride(-3) == 1 and frames.stride(-1) == 3


@functools.lru_cache(maxsize=16)
def _rgb_affine(
    height: int, width: int, device: torch.device, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``1 / (255 std)`` and ``-mean / std`` shaped ``(3, H, W)`` in the frames'
    layout, so the element-wise kernels run over contiguous memory."""
    mean = torch.tensor(IMAGENET_MEAN, device=device)
    std = torch.tensor(IMAGENET_STD, device=device)
    scale, shift = 1 / (255 * std), -mean / std
    if not channels_last:
        return scale.view(3, 1, 1), shift.view(3, 1, 1)
    planes = [v.expand(height, width, 3).contiguous().permute(2, 0, 1) for v in (scale, shift)]
    return planes[0], planes[1]  # (3, H, W) with strides (1, 3 W, 3)


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
