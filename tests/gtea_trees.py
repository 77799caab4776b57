"""Tiny GTEA61 trees of real image files, for tests of every package.

``make_tree(tmp_path)`` writes a course-layout dataset (3 classes, 4 users, 8 frames of 32x24
pixels per video) in well under a second; every argument can be changed. Paths follow the real
archives' conventions independently of ``data_pipeline``, so tests check the library against
them rather than against itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["DEFAULT_CLASSES", "Tree", "make_tree", "write_image"]

DEFAULT_CLASSES = ("close_jam", "open_jam", "pour_coffee,spoon,cup")

# modality -> (course tree, course subfolder, course name) and (original tree, original name)
_COURSE = {
    "rgb": ("processed_frames2", "rgb", "rgb{:04d}.png"),
    "mmaps": ("processed_frames2", "mmaps", "map{:04d}.png"),
    "flow_x": ("flow_x_processed", None, "flow_x_{:05d}.png"),
    "flow_y": ("flow_y_processed", None, "flow_y_{:05d}.png"),
}
_ORIGINAL = {
    "rgb": ("frames", None, "image_{:05d}.jpg"),
    "flow_x": ("flow_x", None, "flow_x_{:05d}.jpg"),
    "flow_y": ("flow_y", None, "flow_y_{:05d}.jpg"),
}

Painter = Callable[[str, int, np.random.Generator], np.ndarray]
"""``(modality, frame number, rng) -> uint8 (H, W, 3) or (H, W)`` image of one frame."""


@dataclass
class Tree:
    """A tree written by :func:`make_tree`."""

    root: Path
    """The dataset folder (``processed_frames2`` etc. are inside it)."""
    layout: str
    videos: list[tuple[str, str, str, int]] = field(default_factory=list)
    """``(user, class, instance, frames)`` of every video, in writing order."""

    def folder(self, modality: str, user: str, class_name: str, instance: str) -> Path:
        """Folder of one video's frames of ``modality`` (rgb, mmaps, flow_x, flow_y)."""
        tree, sub, _ = (_COURSE if self.layout == "course" else _ORIGINAL)[modality]
        folder = self.root / tree / user / class_name / instance
        return folder / sub if sub else folder

    def frame(self, modality: str, user: str, class_name: str, instance: str, k: int) -> Path:
        """File of frame ``k`` (1-based; the original layout numbers RGB files from 0)."""
        _, _, pattern = (_COURSE if self.layout == "course" else _ORIGINAL)[modality]
        number = k - 1 if self.layout == "original" and modality == "rgb" else k
        return self.folder(modality, user, class_name, instance) / pattern.format(number)

    def files(self) -> dict[Path, bytes]:
        """Every file under the root with its content, to compare before and after a change."""
        return {p: p.read_bytes() for p in sorted(self.root.rglob("*")) if p.is_file()}


def write_image(path: Path, array: np.ndarray) -> None:
    """Write a uint8 ``(H, W)`` or ``(H, W, 3)`` array (PNG or JPEG by extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jpg":
        Image.fromarray(array).save(path, quality=95)
    else:
        Image.fromarray(array).save(path, compress_level=1)


def random_painter(size: tuple[int, int]) -> Painter:
    """Random RGB frames, random gray flow and binary motion maps of ``size`` = (W, H)."""
    width, height = size

    def paint(modality: str, k: int, rng: np.random.Generator) -> np.ndarray:
        if modality == "rgb":
            return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        if modality == "mmaps":
            return (rng.random((height, width)) < 0.3).astype(np.uint8) * 255
        return rng.integers(0, 256, (height, width), dtype=np.uint8)

    return paint


def make_tree(
    root: Path,
    *,
    layout: str = "course",
    users: Sequence[str] = ("S1", "S2", "S3", "S4"),
    classes: Sequence[str] = DEFAULT_CLASSES,
    instances: int = 1,
    frames: int | Sequence[int] = 8,
    size: tuple[int, int] = (32, 24),
    seed: int = 0,
    painter: Painter | None = None,
) -> Tree:
    """Write a dataset under ``root`` and return it.

    ``frames`` is one count for every video or a sequence cycled over the videos in writing order
    (users, then classes, then instances). ``painter`` draws each frame (default: random).
    """
    if layout not in ("course", "original"):
        raise ValueError(f"layout: 'course' or 'original', got {layout!r}")
    counts = [frames] if isinstance(frames, int) else list(frames)
    paint = painter or random_painter(size)
    modalities = _COURSE if layout == "course" else _ORIGINAL
    rng = np.random.default_rng(seed)
    tree = Tree(root, layout)
    for user in users:
        for class_name in classes:
            for instance in range(1, instances + 1):
                n = counts[len(tree.videos) % len(counts)]
                tree.videos.append((user, class_name, str(instance), n))
                for modality in modalities:
                    for k in range(1, n + 1):
                        path = tree.frame(modality, user, class_name, str(instance), k)
                        write_image(path, paint(modality, k, rng))
    return tree
