"""Frame decoding behind a small interface, so a decoded-frame cache can replace it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from data_pipeline._index import DatasetError

__all__ = ["FrameDecoder", "PILFrameDecoder"]

Mode = Literal["RGB", "L"]


@runtime_checkable
class FrameDecoder(Protocol):
    """Reads frame files into uint8 tensors."""

    def read(self, paths: Sequence[Path], mode: Mode) -> torch.Tensor:
        """Decode ``paths`` (all of one size) as ``mode``: uint8 ``(N, C, H, W)``, C = 3 for
        ``RGB`` and 1 for ``L``, in any memory layout. Raises :class:`DatasetError` naming an
        unreadable file."""
        ...


class PILFrameDecoder:
    """Decodes PNG or JPEG files with Pillow, converting to the requested mode.

    A grayscale RGB frame becomes three equal channels; flow saved as RGB becomes one channel.
    """

    def read(self, paths: Sequence[Path], mode: Mode) -> torch.Tensor:
        if not paths:
            raise ValueError("paths: nothing to decode")
        arrays = [self._decode(path, mode) for path in paths]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise DatasetError(f"{paths[0].parent}: frames of different sizes {sorted(shapes)}")
        stacked = np.stack(arrays)  # (N, H, W) or (N, H, W, 3)
        if mode == "L":
            return torch.from_numpy(stacked).unsqueeze(1)  # (N, 1, H, W)
        # (N, 3, H, W) in channels-last memory, as decoded: the resize kernels are fastest on it
        return torch.from_numpy(stacked).permute(0, 3, 1, 2)

    @staticmethod
    def _decode(path: Path, mode: Mode) -> np.ndarray:
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert(mode))
        except (OSError, SyntaxError, ValueError) as exc:
            raise DatasetError(f"{path}: cannot decode image ({exc})") from exc
