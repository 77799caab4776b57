"""Structural scan of a GTEA61 tree: which videos exist and what is wrong with the folders.

The walk has a fixed depth (``<tree>/<user>/<class>/<instance>[/<modality>]/<frame>``), so a
directory link can never make it loop; links that point back to one of their own parents are
still reported, because every file under them would appear twice. Images are not decoded here
(:mod:`data_pipeline._check` does that); zero-byte files are caught because they cost nothing.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from data_pipeline._index import Video, instance_sort_key, user_sort_key
from data_pipeline._layout import Layout, Modality, detect_layout

__all__ = ["QUARANTINE", "FatalProblem", "Problem", "ScanResult", "quarantine_path", "scan"]

QUARANTINE = "egotune-quarantine"
"""Folder inside the dataset folder that receives files moved aside by a repair."""

_USER = re.compile(r"S\d+")
_DISPOSABLE = ".DS_Store"

_VideoKey = tuple[str, str, str]  # user, class name, instance


@dataclass(frozen=True)
class Problem:
    """A repairable problem: loading tolerates it, ``fix_dataset`` repairs it."""

    kind: str
    """``missing_mmap``, ``hidden_file`` or ``duplicate_file``."""
    path: Path
    repair: str
    """What the repair does, in words."""
    action: str
    """``copy`` (``source`` onto ``path``), ``delete`` or ``quarantine``."""
    source: Path | None = None
    """For ``missing_mmap``: the nearest existing map, copied into the missing one's place."""

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "path": str(self.path), "repair": self.repair}


@dataclass(frozen=True)
class FatalProblem:
    """A problem that makes the dataset unusable until someone fixes it by hand."""

    kind: str
    path: Path
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "path": str(self.path), "message": self.message}


@dataclass(frozen=True)
class _Frame:
    number: int
    path: Path


@dataclass
class ScanResult:
    """Everything the structural scan found."""

    root: Path
    layout: Layout | None
    dataset_dir: Path
    videos: list[Video] = field(default_factory=list)
    """Usable videos, sorted by user, class and instance."""
    users: dict[str, int] = field(default_factory=dict)
    """Video folders found per user (usable or not)."""
    class_names: tuple[str, ...] = ()
    frame_counts: list[int] = field(default_factory=list)
    """RGB frames of every video folder that has some."""
    problems: list[Problem] = field(default_factory=list)
    fatal: list[FatalProblem] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    """Every non-empty frame file, for decoding checks."""


def quarantine_path(dataset_dir: Path, path: Path) -> Path:
    """Where a repair moves ``path``: the same relative place inside the quarantine folder."""
    return dataset_dir / QUARANTINE / path.relative_to(dataset_dir)


class _Scanner:
    def __init__(self, layout: Layout, dataset_dir: Path, result: ScanResult) -> None:
        self.layout = layout
        self.dataset_dir = dataset_dir
        self.result = result

    def fatal(self, kind: str, path: Path, message: str) -> None:
        self.result.fatal.append(FatalProblem(kind, path, message))

    def hidden(self, path: Path) -> None:
        if path.name == _DISPOSABLE and not path.is_dir():
            problem = Problem("hidden_file", path, "delete (Finder metadata)", "delete")
        else:
            target = quarantine_path(self.dataset_dir, path).relative_to(self.dataset_dir)
            problem = Problem("hidden_file", path, f"move to {target}", "quarantine")
        self.result.problems.append(problem)

    def list_dir(
        self, folder: Path, ancestors: frozenset[str]
    ) -> tuple[list[tuple[Path, frozenset[str]]], list[os.DirEntry[str]]]:
        """Visible sub-folders (with their ancestors' real paths) and visible files, by name."""
        folders, files = [], []
        with os.scandir(folder) as iterator:
            entries = sorted(iterator, key=lambda entry: entry.name)
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                self.hidden(path)
            elif _is_link_loop(entry):
                self.fatal("symlink_loop", path, "a symbolic link that resolves to itself")
            elif entry.is_dir():
                real = os.path.realpath(path)
                if real in ancestors:
                    self.fatal("symlink_loop", path, f"links back to its parent folder {real}")
                else:
                    folders.append((path, ancestors | {real}))
            elif entry.is_file():
                files.append(entry)
            else:
                self.fatal("unexpected_entry", path, "neither a folder nor a file (broken link?)")
        return folders, files

    def unexpected(self, entries: list[os.DirEntry[str]], expected: str) -> None:
        for entry in entries:
            self.fatal("unexpected_entry", Path(entry.path), f"a file where {expected} belongs")

    def subfolders(
        self, folder: Path, ancestors: frozenset[str], expected: str
    ) -> list[tuple[Path, frozenset[str]]]:
        folders, files = self.list_dir(folder, ancestors)
        self.unexpected(files, expected)
        return folders

    def instance_dirs(self, top: Path) -> Iterator[tuple[_VideoKey, Path, frozenset[str]]]:
        users = self.subfolders(top, frozenset({os.path.realpath(top)}), "a user folder")
        if not users:
            self.fatal("no_users", top, "no user folders (S1, S2, ...)")
        for user_dir, user_anc in users:
            if not _USER.fullmatch(user_dir.name):
                self.fatal("unknown_user", user_dir, "user folders are named S<number>, e.g. S1")
                continue
            for class_dir, class_anc in self.subfolders(user_dir, user_anc, "a class folder"):
                for inst_dir, inst_anc in self.subfolders(class_dir, class_anc, "an instance"):
                    yield (user_dir.name, class_dir.name, inst_dir.name), inst_dir, inst_anc

    def scan_tree(self, tree: str) -> dict[_VideoKey, dict[str, list[_Frame]]]:
        top = self.dataset_dir / tree
        if not top.is_dir():
            self.fatal("missing_modality", top, f"folder {tree}/ of the {self.layout.name} layout")
            return {}
        modalities = self.layout.modalities_in(tree)
        found = {}
        for key, folder, ancestors in self.instance_dirs(top):
            found[key] = self.scan_instance(folder, ancestors, modalities)
        return found

    def scan_instance(
        self, folder: Path, ancestors: frozenset[str], modalities: tuple[Modality, ...]
    ) -> dict[str, list[_Frame]]:
        if len(modalities) == 1 and modalities[0].subfolder is None:
            return {modalities[0].name: self.scan_frames(folder, ancestors, modalities[0])}
        by_folder = {m.subfolder: m for m in modalities}
        frames = {}
        for path, sub_ancestors in self.subfolders(folder, ancestors, "a modality folder"):
            modality = by_folder.get(path.name)
            if modality is None:
                self.fatal(
                    "unexpected_entry", path, f"expected only {', '.join(map(str, by_folder))}"
                )
            else:
                frames[modality.name] = self.scan_frames(path, sub_ancestors, modality)
        return frames

    def scan_frames(
        self, folder: Path, ancestors: frozenset[str], modality: Modality
    ) -> list[_Frame]:
        folders, files = self.list_dir(folder, ancestors)
        for path, _ in folders:
            self.fatal("unexpected_entry", path, "a folder among the frame files")
        frames: dict[int, Path] = {}
        for entry in files:
            path = Path(entry.path)
            match = modality.frame_pattern.fullmatch(entry.name)
            if match is None:
                self.non_frame(path, modality)
                continue
            number = int(match.group(1))
            if number in frames:
                self.fatal("duplicate_number", path, f"same frame number as {frames[number].name}")
            frames[number] = path
            if entry.stat().st_size == 0:
                self.fatal("undecodable_image", path, "zero-byte image file")
            else:
                self.result.images.append(path)
        return [_Frame(n, frames[n]) for n in sorted(frames)]

    def non_frame(self, path: Path, modality: Modality) -> None:
        if modality.duplicate_pattern.fullmatch(path.name):
            target = quarantine_path(self.dataset_dir, path).relative_to(self.dataset_dir)
            problem = Problem("duplicate_file", path, f"move to {target}", "quarantine")
            self.result.problems.append(problem)
        else:
            self.fatal("unexpected_entry", path, f"not a {modality.prefix}<number> frame file")

    def video(self, key: _VideoKey, frames: dict[str, list[_Frame]]) -> Video | None:
        user, class_name, instance = key
        name = "/".join(key)
        folder = self.dataset_dir / self.layout.modalities[0].tree / user / class_name / instance
        missing = [m for m in self.layout.modalities if m.name not in frames]
        for modality in missing:
            where = modality.frame_dir(self.dataset_dir, user, class_name, instance)
            self.fatal("missing_modality", where, f"video {name} has no {modality.name} folder")
        if missing:
            return None
        rgb = frames["rgb"]
        if not rgb:
            self.fatal("empty_video", folder, f"video {name} has no RGB frames")
            return None
        counts = {m: len(frames[m]) for m in ("rgb", "flow_x", "flow_y")}
        if len(set(counts.values())) > 1:
            listed = ", ".join(f"{m} {n}" for m, n in counts.items())
            self.fatal("count_mismatch", folder, f"video {name} has {listed} frames")
            return None
        mmaps: tuple[Path, ...] = ()
        if "mmaps" in frames:
            map_dir = self.layout.modality("mmaps")
            assert map_dir is not None
            resolved = self.resolve_maps(key, rgb, frames["mmaps"], map_dir)
            if resolved is None:
                return None
            mmaps = resolved
        return Video(
            user,
            class_name,
            instance,
            len(rgb),
            tuple(f.path for f in rgb),
            tuple(f.path for f in frames["flow_x"]),
            tuple(f.path for f in frames["flow_y"]),
            mmaps,
        )

    def resolve_maps(
        self, key: _VideoKey, rgb: list[_Frame], maps: list[_Frame], modality: Modality
    ) -> tuple[Path, ...] | None:
        """One map per RGB frame; missing maps become problems and borrow the nearest map."""
        folder = modality.frame_dir(self.dataset_dir, *key)
        numbers = {f.number for f in rgb}
        available = {f.number: f.path for f in maps}
        extra = sorted(set(available) - numbers)
        if extra:
            message = f"{len(extra)} motion map(s) without an RGB frame of the same number"
            self.fatal("count_mismatch", available[extra[0]], message)
            return None
        if not available:
            self.fatal("missing_modality", folder, f"video {'/'.join(key)} has no motion maps")
            return None
        resolved = []
        for frame in rgb:
            if frame.number in available:
                resolved.append(available[frame.number])
                continue
            source = available[_nearest(frame.number, available)]
            rgb_prefix = self.layout.modalities[0].prefix
            target = folder / (modality.prefix + frame.path.name[len(rgb_prefix) :])
            self.result.problems.append(
                Problem("missing_mmap", target, f"copy {source.name}", "copy", source)
            )
            resolved.append(source)
        return tuple(resolved)


def _is_link_loop(entry: os.DirEntry[str]) -> bool:
    """A link whose target leads back to itself (``ln -s x x``): following it fails with ELOOP."""
    if not entry.is_symlink():
        return False
    try:
        entry.stat()
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _nearest(number: int, available: dict[int, Path]) -> int:
    """Closest existing frame number; on a tie the later frame (search forward first)."""
    return min(available, key=lambda n: (abs(n - number), n < number))


def _sort_key(key: _VideoKey) -> tuple[tuple[int, str], str, tuple[int, int, str]]:
    return user_sort_key(key[0]), key[1], instance_sort_key(key[2])


def _scan_top(scanner: _Scanner) -> None:
    with os.scandir(scanner.dataset_dir) as iterator:
        hidden = sorted(entry.name for entry in iterator if entry.name.startswith("."))
    for name in hidden:
        scanner.hidden(scanner.dataset_dir / name)


def scan(root: Path) -> ScanResult:
    """Walk the dataset at ``root`` (or ``root/GTEA61``) without decoding any image."""
    detected = detect_layout(root)
    if detected is None:
        result = ScanResult(root, None, root)
        message = "no GTEA61 layout: expected processed_frames2/ (course) or frames/ (original)"
        result.fatal.append(FatalProblem("unknown_layout", root, f"{message} in it or in GTEA61/"))
        return result
    layout, dataset_dir = detected
    result = ScanResult(root, layout, dataset_dir)
    scanner = _Scanner(layout, dataset_dir, result)
    _scan_top(scanner)
    frames: dict[_VideoKey, dict[str, list[_Frame]]] = {}
    for tree in layout.trees:
        for key, by_modality in scanner.scan_tree(tree).items():
            frames.setdefault(key, {}).update(by_modality)
    keys = sorted(frames, key=_sort_key)
    for key in keys:
        result.users[key[0]] = result.users.get(key[0], 0) + 1
        if frames[key].get("rgb"):
            result.frame_counts.append(len(frames[key]["rgb"]))
        video = scanner.video(key, frames[key])
        if video is not None:
            result.videos.append(video)
    result.class_names = tuple(sorted({key[1] for key in keys}))
    return result
