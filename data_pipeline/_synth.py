"""A synthetic GTEA61 in the course layout, for demos, tests and CPU runs.

``synthesize(root)`` writes ``root/GTEA61/{processed_frames2,flow_x_processed,flow_y_processed}``
with users S1-S4, real class names, PNG frames, warp flow and binary motion maps, and plants the
real archive's defects (``.DS_Store`` files, videos without ``map0001.png``). Each class is an
(action, object) pair: the object sets the appearance and the action the motion; ``close_X`` is
``open_X`` played backwards with the same draw, so only a model that uses time tells them apart.
Output is byte-identical for a given seed; videos are rendered on a process pool.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_pipeline._classes import GTEA61_CLASSES, choose_classes, partner, verb_of
from data_pipeline._index import DatasetError
from data_pipeline._layout import COURSE
from data_pipeline._synth_render import VideoSpec, appearance_of, render_video

__all__ = ["SynthSummary", "synthesize"]

USERS = ("S1", "S2", "S3", "S4")
_TABLES = ((148, 138, 122), (132, 134, 128), (156, 146, 136), (124, 128, 120))
_DS_STORE = b"\x00\x00\x00\x01Bud1" + bytes(56)
_SHORTEST = 5  # the real archive's shortest videos have 5 frames


@dataclass(frozen=True)
class SynthSummary:
    """What ``synthesize`` wrote."""

    root: Path
    """The dataset folder, ``<root>/GTEA61``."""
    class_names: tuple[str, ...]
    users: tuple[str, ...]
    videos: int
    frames: int
    """RGB frames over all videos."""
    missing_mmaps: tuple[Path, ...]
    """Planted defect: map files left out."""
    hidden_files: tuple[Path, ...]
    """Planted defect: ``.DS_Store`` files."""
    seconds: float


def _draw_seed(seed: int, user: str, class_name: str, instance: int) -> tuple[int, ...]:
    # open_X and close_X share the draw of open_X, so one is the other reversed.
    twin = partner(class_name)
    group = class_name if verb_of(class_name) != "close" or twin is None else twin
    return (seed, int(user[1:]), GTEA61_CLASSES.index(group), instance)


def _frame_count(
    draw: tuple[int, ...], frame_range: tuple[int, int], shortest: tuple[int, ...]
) -> int:
    if draw == shortest:
        return _SHORTEST
    low, high = frame_range
    return int(np.random.default_rng([*draw, 7]).integers(low, high, endpoint=True))


def _specs(
    dataset_dir: Path,
    classes: Sequence[str],
    videos_per_class: int,
    size: tuple[int, int],
    seed: int,
    frame_range: tuple[int, int],
) -> list[VideoSpec]:
    rgb, mmaps, flow_x, flow_y = COURSE.modalities
    low, high = frame_range
    shortest = _draw_seed(seed, "S3", classes[0], 1) if low <= _SHORTEST <= high else ()
    specs: list[VideoSpec] = []
    for u, user in enumerate(USERS):
        for class_name in classes:
            for instance in range(1, videos_per_class + 1):
                key = (dataset_dir, user, class_name, str(instance))
                draw = _draw_seed(seed, user, class_name, instance)
                specs.append(
                    VideoSpec(
                        rgb_dir=rgb.frame_dir(*key),
                        map_dir=mmaps.frame_dir(*key),
                        flow_x_dir=flow_x.frame_dir(*key),
                        flow_y_dir=flow_y.frame_dir(*key),
                        n_frames=_frame_count(draw, frame_range, shortest),
                        action=verb_of(class_name),
                        appearance=appearance_of(class_name),
                        draw=draw,
                        size=size,
                        table=_TABLES[u],
                        skip_first_map=len(specs) % 10 == 3,
                    )
                )
    return specs


def _render(specs: list[VideoSpec], workers: int | None) -> int:
    workers = min(workers or os.cpu_count() or 1, len(specs))
    if workers <= 1:
        return sum(render_video(spec) for spec in specs)
    # Longest videos first keeps the workers busy until the end.
    ordered = sorted(specs, key=lambda s: -s.n_frames)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(render_video, ordered))


def _plant_hidden(dataset_dir: Path, classes: Sequence[str]) -> tuple[Path, ...]:
    """``.DS_Store`` files at user, class and instance level, as in the real archive."""
    frames, flow_x = dataset_dir / COURSE.trees[0], dataset_dir / COURSE.trees[1]
    paths = (
        frames / "S1" / ".DS_Store",
        frames / "S2" / classes[0] / ".DS_Store",
        frames / "S4" / classes[-1] / "1" / ".DS_Store",
        flow_x / "S3" / ".DS_Store",
    )
    for path in paths:
        path.write_bytes(_DS_STORE)
    return paths


def _check_args(
    classes: int, videos_per_class: int, size: tuple[int, int], frame_range: tuple[int, int]
) -> None:
    if isinstance(videos_per_class, bool) or not isinstance(videos_per_class, int):
        raise ValueError(f"videos_per_class: an integer >= 1, got {videos_per_class!r}")
    if videos_per_class < 1:
        raise ValueError(f"videos_per_class: an integer >= 1, got {videos_per_class!r}")
    if len(size) != 2 or min(size) < 16:
        raise ValueError(f"size: (width, height), each at least 16, got {size!r}")
    low, high = frame_range
    if not 2 <= low <= high:
        raise ValueError(f"frame_range: (low, high) with 2 <= low <= high, got {frame_range!r}")
    choose_classes(classes)


def synthesize(
    root: str | os.PathLike[str],
    *,
    classes: int = 12,
    videos_per_class: int = 2,
    size: tuple[int, int] = (455, 256),
    seed: int = 0,
    frame_range: tuple[int, int] = (5, 24),
    workers: int | None = None,
) -> SynthSummary:
    """Write a synthetic GTEA61 under ``root/GTEA61`` (which must not exist yet).

    ``classes`` real class names (3..61, with open/close pairs and comma names), each with
    ``videos_per_class`` instances per user S1-S4 of ``frame_range`` frames (one video has 5),
    ``size`` = (width, height) pixels. ``workers`` processes render (default: one per CPU).
    """
    _check_args(classes, videos_per_class, size, frame_range)
    started = time.perf_counter()
    dataset_dir = Path(root) / "GTEA61"
    if dataset_dir.exists():
        raise DatasetError(f"{dataset_dir}: already exists; choose an empty destination")
    names = choose_classes(classes)
    width, height = size
    specs = _specs(dataset_dir, names, videos_per_class, (width, height), seed, frame_range)
    frames = _render(specs, workers)
    hidden = _plant_hidden(dataset_dir, names)
    missing = tuple(spec.map_dir / "map0001.png" for spec in specs if spec.skip_first_map)
    return SynthSummary(
        root=dataset_dir,
        class_names=names,
        users=USERS,
        videos=len(specs),
        frames=frames,
        missing_mmaps=missing,
        hidden_files=hidden,
        seconds=time.perf_counter() - started,
    )
