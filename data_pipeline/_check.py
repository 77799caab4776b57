"""Dataset validation: the full check behind ``egotune data check`` and the loader's ``discover``.

``discover`` runs the structural scan only (fast enough for every training start) and refuses a
dataset with fatal problems; ``check_dataset`` also decodes every image fully, in parallel,
because a truncated PNG passes ``Image.verify()`` and only fails when its pixels are read.
"""

from __future__ import annotations

import os
import statistics
import warnings
from collections import Counter
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from data_pipeline._index import DatasetError, DatasetIndex, DatasetWarning, Video
from data_pipeline._scan import FatalProblem, Problem, scan

__all__ = ["CheckReport", "check_dataset", "discover", "verify_frames"]

_DECODE_CHUNK = 128


@dataclass
class CheckReport:
    """What ``egotune data check`` reports; ``to_dict()`` is its ``--json`` output."""

    root: Path
    dataset_dir: Path
    layout: str | None
    users: dict[str, int]
    """Video folders per user."""
    class_names: tuple[str, ...]
    frame_counts: list[int]
    """RGB frames per video."""
    problems: list[Problem]
    fatal: list[FatalProblem]

    @property
    def usable(self) -> bool:
        return not self.fatal

    @property
    def videos(self) -> int:
        return sum(self.users.values())

    def frame_stats(self) -> dict[str, float | int | None]:
        counts = self.frame_counts
        if not counts:
            return {"min": None, "median": None, "max": None}
        median = statistics.median(counts)
        if float(median).is_integer():
            median = int(median)
        return {"min": min(counts), "median": median, "max": max(counts)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "layout": self.layout,
            "users": dict(self.users),
            "classes": len(self.class_names),
            "class_names": list(self.class_names),
            "videos": self.videos,
            "frames": self.frame_stats(),
            "problems": [p.to_dict() for p in self.problems],
            "fatal": [f.to_dict() for f in self.fatal],
        }


def _decode_errors(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    errors = []
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()  # verify() would miss a truncated file
        except Exception as exc:  # any decoder failure makes the file unusable
            errors.append((path, f"cannot decode image: {exc}"))
    return errors


def _undecodable(paths: Sequence[Path], workers: int | None) -> list[FatalProblem]:
    """Decode every image on a thread pool (Pillow releases the GIL while decoding)."""
    chunks = [paths[i : i + _DECODE_CHUNK] for i in range(0, len(paths), _DECODE_CHUNK)]
    if not chunks:
        return []
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = pool.map(_decode_errors, chunks)
        return [FatalProblem("undecodable_image", p, m) for chunk in results for p, m in chunk]


def check_dataset(
    root: str | os.PathLike[str], *, decode: bool = True, workers: int | None = None
) -> CheckReport:
    """Scan the dataset at ``root`` (or ``root/GTEA61``) and list every problem it has.

    With ``decode`` every frame file is fully decoded on ``workers`` threads (default: one per
    CPU). Nothing on disk changes.
    """
    result = scan(_existing_dir(root))
    fatal = list(result.fatal)
    if decode:
        fatal.extend(_undecodable(result.images, workers))
    return CheckReport(
        root=result.root,
        dataset_dir=result.dataset_dir,
        layout=result.layout.name if result.layout else None,
        users=result.users,
        class_names=result.class_names,
        frame_counts=result.frame_counts,
        problems=result.problems,
        fatal=fatal,
    )


def _existing_dir(root: str | os.PathLike[str]) -> Path:
    path = Path(root)
    if not path.is_dir():
        raise DatasetError(f"{path}: no such dataset folder")
    return path


def _fatal_message(root: Path, fatal: Sequence[FatalProblem]) -> str:
    """One line: how many, the first problem with its path, and the command listing them all."""
    first = fatal[0]
    more = f" (and {len(fatal) - 1} more)" if len(fatal) > 1 else ""
    return (
        f"{root}: {len(fatal)} fatal dataset problem(s), first {first.kind}: {first.path}: "
        f"{first.message}{more}; fix it by hand, `egotune data check {root}` lists them all"
    )


def discover(root: str | os.PathLike[str]) -> DatasetIndex:
    """Index the dataset at ``root`` (or ``root/GTEA61``) for loading.

    Raises :class:`DatasetError` on any fatal problem. Repairable problems (hidden files,
    duplicate files, missing motion maps) are tolerated, with one :class:`DatasetWarning`.
    """
    result = scan(_existing_dir(root))
    if result.fatal:
        raise DatasetError(_fatal_message(result.root, result.fatal))
    assert result.layout is not None
    if result.problems:
        kinds = Counter(p.kind for p in result.problems)
        listed = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        warnings.warn(
            f"{result.root}: tolerating {listed}; `egotune data check {result.root} --fix` "
            "repairs them",
            DatasetWarning,
            stacklevel=2,
        )
    return DatasetIndex(result.dataset_dir, result.layout.name, result.videos, result.class_names)


def verify_frames(
    index: DatasetIndex, workers: int | None = None, *, only: Collection[Path] | None = None
) -> None:
    """Decode every frame file of ``index`` fully (those in ``only``, when given), as
    ``check_dataset`` does.

    :func:`discover` does not decode (it runs at every training start), so a truncated PNG would
    only fail once a trial reads it; a search calls this first. Raises :class:`DatasetError`
    naming the first undecodable file.
    """
    paths = [path for video in index.videos for path in _frame_files(video)]
    if only is not None:
        wanted = set(only)
        paths = [path for path in paths if path in wanted]
    fatal = _undecodable(paths, workers)
    if fatal:
        raise DatasetError(_fatal_message(index.root, fatal))


def _frame_files(video: Video) -> tuple[Path, ...]:
    # A borrowed motion map appears more than once; decode it once.
    return (*video.rgb, *video.flow_x, *video.flow_y, *dict.fromkeys(video.mmaps))
