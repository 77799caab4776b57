"""A synthetic GTEA61 in the course layout, for demos, tests, benchmarks and CPU runs.

``synthesize(root)`` writes ``root/GTEA61/{processed_frames2,flow_x_processed,flow_y_processed}``
with users S1-S4, real class names, PNG frames, warp flow and binary motion maps, and plants the
real archive's defects (``.DS_Store`` files, videos without ``map0001.png``). What a video shows
is decided in :mod:`data_pipeline.synth_scene` (objects look like their family, the verb moves
a lid, the object or a spoon, users differ) and drawn by :mod:`data_pipeline._synth_render`;
``close_X`` is ``open_X`` played backwards with the same draw, so only a model that uses time
tells them apart. ``like_gtea61=True`` gives the real dataset's shape: all 61 classes, 1 to 7
videos per class and user (457 videos, 116 of them in S2) and its skewed video lengths. Output
is byte-identical for a given seed; videos are rendered on a process pool.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_pipeline._classes import GTEA61_CLASSES, choose_classes
from data_pipeline._index import DatasetError
from data_pipeline._layout import COURSE
from data_pipeline._synth_render import VideoSpec, render_video
from data_pipeline.synth_scene import class_group, user_style

__all__ = ["GTEA61_SHAPE", "SynthSummary", "gtea61_counts", "synthesize"]

USERS = ("S1", "S2", "S3", "S4")
_DS_STORE = b"\x00\x00\x00\x01Bud1" + bytes(56)
_SHORTEST = 5  # the real archive's shortest videos have 5 frames
_MISSING_MAP_EVERY = 25  # 18 of the real archive's 457 videos lack map0001.png

GTEA61_SHAPE = {"S1": 114, "S2": 116, "S3": 113, "S4": 114}
"""Videos per user in the real GTEA61 (457 in all; every user has every class)."""
_MAX_INSTANCES = 7
_LENGTH_MEDIAN, _LENGTH_SPREAD = 34, (0.6, 0.88)  # log-scale spread below / above the median
_LENGTH_CAP = 160  # the real maximum is 645; longer videos only cost disk space here

Counts = Mapping[tuple[str, str], int]


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
    videos_per_user: dict[str, int]
    missing_mmaps: tuple[Path, ...]
    """Planted defect: map files left out."""
    hidden_files: tuple[Path, ...]
    """Planted defect: ``.DS_Store`` files."""
    seconds: float


def gtea61_counts(seed: int) -> dict[tuple[str, str], int]:
    """Videos per (user, class) with the real GTEA61's shape: every class once per user, the
    rest spread by a per-class popularity (so some classes have 4 videos in all and others near
    20), at most 7 per user and class, and the real per-user totals."""
    popularity = np.random.default_rng([seed, 61]).gamma(1.0, size=len(GTEA61_CLASSES))
    counts: dict[tuple[str, str], int] = {}
    for number, user in enumerate(USERS, start=1):
        table = np.ones(len(GTEA61_CLASSES), dtype=int)
        rng = np.random.default_rng([seed, number, 62])
        for _ in range(GTEA61_SHAPE[user] - len(GTEA61_CLASSES)):
            weights = popularity * (table < _MAX_INSTANCES)
            table[rng.choice(len(table), p=weights / weights.sum())] += 1
        counts.update({(user, name): int(c) for name, c in zip(GTEA61_CLASSES, table, strict=True)})
    return counts


def _draw_seed(seed: int, user: str, class_name: str, instance: int) -> tuple[int, ...]:
    # open_X and close_X share the draw of open_X, so one is the other played backwards.
    return (seed, int(user[1:]), GTEA61_CLASSES.index(class_group(class_name)), instance)


def _frame_count(draw: tuple[int, ...], frame_range: tuple[int, int] | None) -> int:
    rng = np.random.default_rng([*draw, 7])
    if frame_range is not None:
        low, high = frame_range
        return int(rng.integers(low, high, endpoint=True))
    # The real lengths: median 34, a tenth under 16, a tenth over 105 (skewed).
    z = rng.normal()
    spread = _LENGTH_SPREAD[0] if z < 0 else _LENGTH_SPREAD[1]
    return int(np.clip(round(_LENGTH_MEDIAN * np.exp(spread * z)), _SHORTEST, _LENGTH_CAP))


def _specs(
    dataset_dir: Path,
    counts: Counts,
    size: tuple[int, int],
    seed: int,
    frame_range: tuple[int, int] | None,
) -> list[VideoSpec]:
    rgb, mmaps, flow_x, flow_y = COURSE.modalities
    first_class = min(name for _, name in counts)
    shortest = _draw_seed(seed, "S3", first_class, 1)
    specs: list[VideoSpec] = []
    for user in USERS:
        style = user_style(seed, int(user[1:]))
        for class_name in sorted({name for u, name in counts if u == user}):
            for instance in range(1, counts[(user, class_name)] + 1):
                key = (dataset_dir, user, class_name, str(instance))
                draw = _draw_seed(seed, user, class_name, instance)
                can_be_short = frame_range is None or frame_range[0] <= _SHORTEST
                n_frames = _SHORTEST if draw == shortest and can_be_short else None
                specs.append(
                    VideoSpec(
                        rgb_dir=rgb.frame_dir(*key),
                        map_dir=mmaps.frame_dir(*key),
                        flow_x_dir=flow_x.frame_dir(*key),
                        flow_y_dir=flow_y.frame_dir(*key),
                        n_frames=n_frames or _frame_count(draw, frame_range),
                        class_name=class_name,
                        draw=draw,
                        backwards=class_group(class_name) != class_name,
                        size=size,
                        style=style,
                        skip_first_map=len(specs) % _MISSING_MAP_EVERY == 3,
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
        return sum(pool.map(render_video, ordered, chunksize=4))


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
    like_gtea61: bool = False,
) -> SynthSummary:
    """Write a synthetic GTEA61 under ``root/GTEA61`` (which must not exist yet).

    ``classes`` real class names (3..61, with open/close pairs and comma names), each with
    ``videos_per_class`` instances per user S1-S4 of ``frame_range`` frames (one video has 5),
    ``size`` = (width, height) pixels. ``like_gtea61`` replaces ``classes``,
    ``videos_per_class`` and ``frame_range`` with the real dataset's shape
    (:func:`gtea61_counts`, video lengths of median 34 frames). ``workers`` processes render
    (default: one per CPU).
    """
    _check_args(classes, videos_per_class, size, frame_range)
    started = time.perf_counter()
    dataset_dir = Path(root) / "GTEA61"
    if dataset_dir.exists():
        raise DatasetError(f"{dataset_dir}: already exists; choose an empty destination")
    try:
        dataset_dir.mkdir(parents=True)
    except OSError as exc:
        raise DatasetError(
            f"{root}: cannot write the dataset there ({exc.strerror or exc}); choose another "
            "destination"
        ) from None
    if like_gtea61:
        names, counts = GTEA61_CLASSES, gtea61_counts(seed)
        lengths: tuple[int, int] | None = None
    else:
        names = choose_classes(classes)
        counts = {(u, n): videos_per_class for u in USERS for n in names}
        lengths = frame_range
    width, height = size
    specs = _specs(dataset_dir, counts, (width, height), seed, lengths)
    frames = _render(specs, workers)
    hidden = _plant_hidden(dataset_dir, names)
    missing = tuple(spec.map_dir / "map0001.png" for spec in specs if spec.skip_first_map)
    per_user = {user: sum(c for (u, _), c in counts.items() if u == user) for user in USERS}
    return SynthSummary(
        root=dataset_dir,
        class_names=tuple(names),
        users=USERS,
        videos=len(specs),
        frames=frames,
        videos_per_user=per_user,
        missing_mmaps=missing,
        hidden_files=hidden,
        seconds=time.perf_counter() - started,
    )
