"""The last transform steps of a whole batch, run wherever the batch is (the GPU after the copy).

A :class:`~data_pipeline.ClipDataset` built with ``deferred=True`` stops before the resize: its
items hold uint8 cuts on fixed-size canvases and the cut's side. Resizing and normalising 32
clips of 25 frames costs a DataLoader worker tens of milliseconds per clip and a GPU almost
nothing, and the uint8 canvases are a quarter of the float32 frames to copy. The finisher groups
the batch by cut side (at most four: one per crop scale), resizes each group in one call and
normalises everything at once.

On the CPU the result equals the per-item path exactly (the same uint8 kernel on the same
pixels). On CUDA the resize runs in float32 and is rounded to integers, so a pixel differs from
the CPU value by at most 1/255 before normalisation (about 0.017 after it).
"""

from __future__ import annotations

import torch

from data_pipeline._transforms import (
    downsample_mmaps,
    normalize_flow,
    normalize_rgb,
    resize_square,
)

__all__ = ["BatchFinisher"]


class BatchFinisher:
    """Completes batches of deferred items; batches without ``crop_side`` pass unchanged."""

    def __init__(
        self,
        *,
        crop_size: int,
        mmap_size: int = 7,
        mmap_downsample: str = "point",
        mmap_target: str = "binary",
    ) -> None:
        downsample_mmaps(torch.zeros(1, 1, 1, 1), 1, mmap_downsample, mmap_target)  # validates
        self.crop_size = crop_size
        self.mmap_size = mmap_size
        self.mmap_downsample = mmap_downsample
        self.mmap_target = mmap_target

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Deferred batch (see :class:`ClipDataset`) -> the batch of finished items.

        ``crop_side`` is read on the host: keep it there when the rest moves to the GPU, or
        reading it waits for the GPU.
        """
        if "crop_side" not in batch:
            return batch
        out = dict(batch)
        sides = [int(s) for s in out.pop("crop_side").tolist()]
        static_frame = out.pop("static_frame", None)
        if "rgb" in out:
            out["rgb"] = normalize_rgb(self._resize(out["rgb"], sides, channels=3))
            if static_frame is not None:
                out["static"] = _static_clip(out["rgb"], static_frame)
        if "flow" in out:
            out["flow"] = normalize_flow(self._resize(out["flow"], sides, channels=1))
        if "mmaps" in out:
            maps = self._resize(out["mmaps"], sides, channels=1)  # (B, T, 1, S, S)
            B, T = maps.shape[:2]
            targets = downsample_mmaps(
                maps.flatten(0, 1), self.mmap_size, self.mmap_downsample, self.mmap_target
            )  # (B * T, l, l)
            out["mmaps"] = targets.view(B, T, *targets.shape[1:])
        return out

    def _resize(self, canvases: torch.Tensor, sides: list[int], *, channels: int) -> torch.Tensor:
        """``(B, ..., K, K)`` canvases -> ``(B, ..., S, S)``: each sample's top-left
        ``sides[b]`` square resized to ``crop_size``, in one call per distinct side.

        Images are resized ``channels`` planes at a time, as the per-item path does, so the
        integer kernel sees the same inputs.
        """
        B, *rest = canvases.shape[:-2]
        size = self.crop_size
        # uint8 where the integer kernel runs, integer-valued float32 elsewhere
        exact = canvases.device.type == "cpu" and canvases.dtype == torch.uint8
        finished = canvases.new_empty(
            (B, *rest, size, size), dtype=torch.uint8 if exact else torch.float32
        )
        for side in sorted(set(sides)):
            members = [b for b, s in enumerate(sides) if s == side]
            # a copy from host memory without waiting: a blocking one would make the host wait
            # for every kernel queued before it (the previous training step)
            chosen = torch.tensor(members).to(canvases.device, non_blocking=True)
            cut = canvases[..., :side, :side].index_select(0, chosen)  # (n, ..., side, side)
            images = cut.reshape(-1, channels, side, side)  # (n * planes / C, C, side, side)
            resized = resize_square(images, size).reshape(len(members), *rest, size, size)
            finished.index_copy_(0, chosen, resized.to(finished.dtype))
        return finished


def _static_clip(rgb: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """``(B, T, 3, S, S)`` -> frame ``frame[b]`` of each clip repeated T times."""
    picked = rgb[torch.arange(rgb.shape[0], device=rgb.device), frame.to(rgb.device)]
    return picked.unsqueeze(1).expand_as(rgb).clone()  # (B, T, 3, S, S)
