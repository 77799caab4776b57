"""The training and evaluation dataset: RGB clips, flow stacks, motion maps and static clips.

Every random choice of an item (flip, crop scale and corner, flow start, static frame) comes from
``numpy.random.default_rng([seed, epoch, index])``, never from global state: an item is the same
whatever the number of DataLoader workers, and a run resumed at an epoch sees the same data. The
epoch is the dataset's own (:meth:`ClipDataset.set_epoch`) or travels with the key
(``dataset[epoch, index]``), as loaders whose workers outlive an epoch need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from data_pipeline._batch_finisher import BatchFinisher
from data_pipeline._decode import FrameDecoder, Mode, PILFrameDecoder
from data_pipeline._index import Video
from data_pipeline._sampling import flow_frame_numbers, flow_starts, rgb_frame_numbers
from data_pipeline._transforms import (
    ClipTransform,
    CropParams,
    downsample_mmaps,
    normalize_flow,
    normalize_rgb,
)

__all__ = ["MODALITIES", "ClipDataset"]

MODALITIES = ("rgb", "flow", "mmaps")


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")


class ClipDataset(Dataset[dict[str, torch.Tensor]]):
    """Samples of GTEA61 videos as a dict of tensors (S = ``crop_size``, T = ``frames``).

    * ``label``, ``index``: int64 scalars.
    * ``rgb``: float32 ``(T, 3, S, S)``, ImageNet-normalised frames ``rgb_frame_numbers(N, T)``.
    * ``flow``: float32 ``(2 * flow_stack, S, S)``, x and y interleaved ``[x_k, y_k, x_k+1, ...]``;
      ``(flow_segments, 2 * flow_stack, S, S)`` when ``flow_segments > 1`` (evaluation only).
    * ``mmaps``: float32 ``(T, mmap_size, mmap_size)`` for the RGB frames, in {0, 1} (``binary``)
      or [0, 1] (``gray``), downsampled by ``point`` sampling or the ``grid`` technique.
    * ``static`` (``static=True``): float32 ``(T, 3, S, S)``, one random frame of the transformed
      RGB clip repeated T times, for the static-dynamic discriminator.

    All modalities of an item share one crop and flip.

    ``deferred=True`` leaves the last resize and the normalisation to :class:`BatchFinisher`,
    which does them for a whole batch wherever the batch is (on the GPU after the copy): items
    then hold uint8 ``rgb`` ``(T, 3, K, K)``, ``flow`` ``(2 * flow_stack, K, K)`` and ``mmaps``
    ``(T, 1, K, K)`` whose top-left ``crop_side`` square is the cut (flipped, x-flow inverted),
    K = ``scale_size`` in training and ``crop_size`` in evaluation, plus ``crop_side`` and (with
    ``static``) ``static_frame`` int64 scalars. :meth:`finisher` returns the matching finisher;
    the finished batch equals the batch of ``deferred=False`` items (exactly on the CPU).
    """

    def __init__(
        self,
        videos: Sequence[Video],
        classes: Sequence[str],
        *,
        modalities: Sequence[str] = ("rgb",),
        frames: int = 7,
        train: bool = True,
        crop_size: int = 224,
        scale_size: int | None = None,
        flow_stack: int = 5,
        flow_segments: int = 1,
        mmap_size: int = 7,
        mmap_downsample: str = "point",
        mmap_target: str = "binary",
        static: bool = False,
        seed: int = 0,
        decoder: FrameDecoder | None = None,
        deferred: bool = False,
    ) -> None:
        self.videos = list(videos)
        self.classes = tuple(classes)
        self.modalities = tuple(modalities)
        self.frames, self.train, self.flow_stack = frames, train, flow_stack
        self.flow_segments, self.mmap_size = flow_segments, mmap_size
        self.mmap_downsample, self.mmap_target = mmap_downsample, mmap_target
        self.static, self.seed, self.epoch = static, seed, 0
        self.transform = ClipTransform(train=train, crop_size=crop_size, scale_size=scale_size)
        self.decoder: FrameDecoder = decoder if decoder is not None else PILFrameDecoder()
        self.deferred = deferred
        self._canvas = self.transform.scale_size if train else crop_size
        self._validate()
        self._labels = {name: i for i, name in enumerate(self.classes)}

    def _validate(self) -> None:
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities:
            raise ValueError(
                f"modalities: a non-empty subset of {MODALITIES}, got {self.modalities}"
            )
        for name, minimum in (("frames", 1), ("flow_stack", 1), ("flow_segments", 1)):
            _check_int(name, getattr(self, name), minimum)
        _check_int("mmap_size", self.mmap_size, 1)
        _check_int("seed", self.seed, 0)
        if self.train and self.flow_segments != 1:
            raise ValueError("flow_segments: several flow stacks are an evaluation option only")
        downsample_mmaps(torch.zeros(1, 1, 1, 1), 1, self.mmap_downsample, self.mmap_target)
        if self.static and "rgb" not in self.modalities:
            raise ValueError("static: the static clip is made from the RGB clip; add 'rgb'")
        if "mmaps" in self.modalities and any(not v.mmaps for v in self.videos):
            raise ValueError("modalities: 'mmaps' needs motion maps (the course layout)")
        missing = sorted({v.class_name for v in self.videos} - set(self.classes))
        if missing:
            raise ValueError(f"classes: videos of unlisted classes {missing}")
        stored = getattr(self.decoder, "scale_size", None)
        if stored is not None and stored != self.transform.scale_size:
            raise ValueError(
                f"decoder: its frames are stored at scale_size {stored}, this dataset scales to "
                f"{self.transform.scale_size}; open the store at that size"
            )

    def finisher(self) -> BatchFinisher:
        """The batch step that completes ``deferred`` items (and leaves finished ones alone)."""
        return BatchFinisher(
            crop_size=self.transform.crop_size,
            mmap_size=self.mmap_size,
            mmap_downsample=self.mmap_downsample,
            mmap_target=self.mmap_target,
        )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws ``__getitem__`` uses."""
        _check_int("epoch", epoch, 0)
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.videos)

    def label(self, video: Video) -> int:
        return self._labels[video.class_name]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """Item ``index`` of the epoch set by :meth:`set_epoch`, or, for a key
        ``(epoch, index)`` (:class:`~data_pipeline.EpochBatches`), of that epoch."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        _check_int("epoch", epoch, 0)
        video = self.videos[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        # Fixed draw order (crop, flow start, static frame) whatever the modalities.
        params = self.transform.draw(rng)
        starts = flow_starts(
            video.n_frames,
            self.flow_stack,
            train=self.train,
            rng=rng,
            segments=self.flow_segments,
        )
        static_frame = int(rng.integers(self.frames))
        item = {
            "label": torch.tensor(self.label(video), dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
        }
        if self.deferred:
            # every frame's smaller edge is scale_size after the Scale step (see corner_box)
            side = self._canvas if params is None else int(self.transform.scale_size * params.scale)
            item["crop_side"] = torch.tensor(side, dtype=torch.int64)
            if self.static:
                item["static_frame"] = torch.tensor(static_frame, dtype=torch.int64)
        numbers = rgb_frame_numbers(video.n_frames, self.frames)
        if "rgb" in self.modalities:
            rgb = self._read(video.rgb, numbers, "RGB", params)
            item["rgb"] = rgb if self.deferred else normalize_rgb(rgb)
            if self.static and not self.deferred:
                item["static"] = item["rgb"][static_frame].expand_as(item["rgb"]).clone()
        if "flow" in self.modalities:
            item["flow"] = self._flow(video, starts, params)
        if "mmaps" in self.modalities:
            maps = self._read(video.mmaps, numbers, "L", params)  # (T, 1, S, S)
            item["mmaps"] = maps if self.deferred else self._targets(maps)
        return item

    def _targets(self, maps: torch.Tensor) -> torch.Tensor:
        return downsample_mmaps(maps, self.mmap_size, self.mmap_downsample, self.mmap_target)

    def _read(
        self,
        paths: Sequence[Path],
        numbers: Sequence[int],
        mode: Mode,
        params: CropParams | None,
        *,
        invert_on_flip: bool = False,
    ) -> torch.Tensor:
        """Decode frames ``numbers`` (each file once) and transform them.

        Returns uint8 ``(len(numbers), C, S, S)``, or ``(len(numbers), C, K, K)`` canvases when
        ``deferred``.
        """
        unique = sorted(set(numbers))
        position: Mapping[int, int] = {n: i for i, n in enumerate(unique)}
        decoded = self.decoder.read([paths[n - 1] for n in unique], mode)
        cut = self.transform.cut(decoded, params, invert_on_flip=invert_on_flip)
        done = _on_canvas(cut, self._canvas) if self.deferred else self.transform.resize(cut)
        if len(unique) == len(numbers):  # numbers ascend, so they are `unique` in order
            return done
        return done[[position[n] for n in numbers]]

    def _flow(self, video: Video, starts: Sequence[int], params: CropParams | None) -> torch.Tensor:
        stacks = []
        for start in starts:
            numbers = flow_frame_numbers(start, self.flow_stack, video.n_frames)
            x = self._read(video.flow_x, numbers, "L", params, invert_on_flip=True)
            y = self._read(video.flow_y, numbers, "L", params)
            pairs = torch.cat([x, y], dim=1).flatten(0, 1)  # (2 * stack, S, S): x_k, y_k, ...
            stacks.append(pairs if self.deferred else normalize_flow(pairs))
        return stacks[0] if self.flow_segments == 1 else torch.stack(stacks)


def _on_canvas(cut: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``(N, C, s, s)`` -> ``(N, C, size, size)`` zeros holding the cut at the top left,
    so that cuts of different sides collate into one batch."""
    N, C, side, _ = cut.shape
    canvas = cut.new_zeros((N, size, size, C)).permute(0, 3, 1, 2)  # channels-last, as decoded
    canvas[..., :side, :side] = cut
    return canvas
