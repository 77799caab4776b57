"""Videos found on disk, the global class list, user splits and the dataset fingerprint."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DatasetError",
    "DatasetIndex",
    "DatasetWarning",
    "Video",
    "dataset_fingerprint",
    "leave_one_user_out",
    "split_by_user",
]


class DatasetError(Exception):
    """A fatal problem of the dataset on disk; the message names the offending path."""


class DatasetWarning(UserWarning):
    """Repairable problems were tolerated while loading (``egotune data check --fix``)."""


@dataclass(frozen=True)
class Video:
    """One video: its identity and the frame files of each modality, in frame order.

    Frame ``k`` (1-based) of a modality is ``paths[k - 1]``: the k-th file in numeric order.
    """

    user: str
    class_name: str
    instance: str
    n_frames: int
    rgb: tuple[Path, ...]
    flow_x: tuple[Path, ...]
    flow_y: tuple[Path, ...]
    mmaps: tuple[Path, ...] = ()
    """One map per RGB frame; a missing map is replaced by the nearest existing one. Empty when
    the layout has no motion maps."""

    @property
    def name(self) -> str:
        """``user/class/instance``, e.g. ``S2/pour_coffee,spoon,cup/1``."""
        return f"{self.user}/{self.class_name}/{self.instance}"


def user_sort_key(user: str) -> tuple[int, str]:
    """``S2`` before ``S10``."""
    digits = user[1:]
    return (int(digits) if digits.isdigit() else -1, user)


def instance_sort_key(instance: str) -> tuple[int, int, str]:
    """Numeric instance folders in numeric order, then any others by name."""
    return (0, int(instance), "") if instance.isdigit() else (1, 0, instance)


@dataclass
class DatasetIndex:
    """Every usable video of a dataset and the sorted, global class list."""

    root: Path
    """The dataset folder (the given root or its ``GTEA61`` child)."""
    layout: str
    """``course`` or ``original``."""
    videos: list[Video]
    classes: tuple[str, ...]
    """Sorted class names of the whole dataset; a class index is a position in it."""
    class_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.class_index = {name: i for i, name in enumerate(self.classes)}

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(sorted({v.user for v in self.videos}, key=user_sort_key))

    def label(self, video: Video) -> int:
        """Global class index of ``video``."""
        return self.class_index[video.class_name]


def _check_users(name: str, users: Sequence[str], known: Sequence[str]) -> None:
    if not users:
        raise ValueError(f"{name}: needs at least one user")
    unknown = [u for u in users if u not in known]
    if unknown:
        raise ValueError(
            f"{name}: {', '.join(unknown)} not in the dataset (users: {', '.join(known)})"
        )


def split_by_user(
    index: DatasetIndex,
    train_users: Sequence[str] = ("S1", "S3", "S4"),
    val_users: Sequence[str] = ("S2",),
) -> tuple[list[Video], list[Video]]:
    """Training and validation videos by user (the report trains on S1, S3, S4, validates on S2)."""
    _check_users("train_users", train_users, index.users)
    _check_users("val_users", val_users, index.users)
    shared = sorted(set(train_users) & set(val_users))
    if shared:
        raise ValueError(f"val_users: {', '.join(shared)} also in train_users")
    train = [v for v in index.videos if v.user in train_users]
    val = [v for v in index.videos if v.user in val_users]
    return train, val


def leave_one_user_out(index: DatasetIndex) -> list[tuple[str, list[Video], list[Video]]]:
    """One fold per user: ``(held-out user, training videos of the others, its videos)``."""
    folds = []
    for user in index.users:
        others = [u for u in index.users if u != user]
        train, val = split_by_user(index, others, (user,))
        folds.append((user, train, val))
    return folds


def _video_files(video: Video) -> Iterable[Path]:
    yield from video.rgb
    yield from video.flow_x
    yield from video.flow_y
    yield from video.mmaps


def frame_stamps(index: DatasetIndex) -> dict[str, tuple[int, int]]:
    """Every frame file's size and modification time (ns), by path relative to the root: what
    tells a frame rewritten in place (even at its old size) from the one checked before."""
    stamps = {}
    for video in index.videos:
        for path in _video_files(video):
            stat = os.stat(path)
            stamps[path.relative_to(index.root).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return stamps


def dataset_fingerprint(index: DatasetIndex) -> str:
    """Stable hex digest of the layout, class list and every frame's relative path and size.

    Modification times are left out, so copying the dataset keeps its fingerprint; a changed,
    added or removed frame changes it. Caches of decoded frames key on it.
    """
    digest = hashlib.sha256()
    digest.update(f"{index.layout}\n{'|'.join(index.classes)}\n".encode())
    for video in index.videos:
        for path in _video_files(video):
            relative = path.relative_to(index.root).as_posix()
            digest.update(f"{relative}\t{os.stat(path).st_size}\n".encode())
    return digest.hexdigest()
