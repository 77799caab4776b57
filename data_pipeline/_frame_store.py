"""A node-local store of decoded frames: training reads uint8 arrays instead of decoding PNGs.

Decoding a 455x256 PNG costs about as much as everything else a sample needs, and every trial
of a search decodes every frame again each epoch. :class:`FrameStore` decodes each frame once
per node, applies the Scale step (smaller edge to ``scale_size``, the one step that does not
depend on the random draws) and keeps the result in one raw file per frame kind, memory-mapped
read-only by every process that trains on the dataset. It is a :class:`FrameDecoder`, so a
:class:`~data_pipeline.ClipDataset` given ``decoder=store`` draws and transforms exactly as with
PNG files and yields the same tensors.

Layout, under ``cache_dir/<fingerprint[:16]>-s<scale_size>/``::

    rgb.u8      frames of every video, (H, W, 3) uint8 each, videos in index order
    rgb.json    manifest: format, fingerprint, scale size, per video offset, shape and CRC-32
    flow_x.u8   flow_x.json   flow_y.u8   flow_y.json   mmaps.u8   mmaps.json

Each kind is built on first use, so an RGB-only trial never decodes flow. A process that opens
a store it opened before, whose files are unchanged since, skips the check (a reused trial
worker). Concurrency and
failures: a lock file beside the folder (``fcntl.flock``; the kernel drops it when its holder
dies, so it never goes stale) is held shared while a store is checked and exclusively while it
is built; a second process that needs a store under construction waits and then reuses it. A
build writes ``<kind>.u8.partial``, renames it, then writes the manifest the same way, so a
crash leaves no manifest and the kind counts as absent. Opening checks the manifest against the
dataset and every video's CRC-32 (about 4 GB/s); any mismatch (a truncated or altered file, a
dataset that changed) rebuilds that kind, with a warning, and is never read. The manifest also
records each source frame's size, modification time and CRC-32: a frame whose time or size
changed is read again, and different bytes (a frame rewritten in place, even at its old size)
rebuild the kind; the same bytes under a new time (a copied dataset) only update the record. The
cache folder must be on a local disk: ``flock`` is not reliable over NFS.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import warnings
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from data_pipeline._decode import Mode, PILFrameDecoder
from data_pipeline._index import DatasetIndex, Video, dataset_fingerprint
from data_pipeline._transforms import scale_frames

__all__ = ["FORMAT", "FrameStore", "FrameStoreError", "FrameStoreWarning", "store_kinds"]

FORMAT = 2
"""Version of the layout; a store of another version is rebuilt. Version 2 records each source
frame's size, modification time and checksum."""
_TOUCHED = "source frames touched"
"""The problem of a kind whose source frames have new modification times and unchanged bytes
(a copied dataset): its manifest is brought up to date, nothing is decoded again."""
_MODES: dict[str, Mode] = {"rgb": "RGB", "flow_x": "L", "flow_y": "L", "mmaps": "L"}
_KINDS_OF = {"rgb": ("rgb",), "flow": ("flow_x", "flow_y"), "mmaps": ("mmaps",)}
_SPACE_MARGIN = 1 << 30  # bytes left free on the cache disk after a build

T = TypeVar("T")
R = TypeVar("R")


class FrameStoreError(Exception):
    """The store cannot be built (no space, unwritable folder); the message says what to do."""


class FrameStoreWarning(UserWarning):
    """A store was found invalid and is being rebuilt."""


def store_kinds(modalities: Iterable[str]) -> tuple[str, ...]:
    """Frame kinds (``Video`` fields) that ``ClipDataset`` modalities read."""
    kinds: list[str] = []
    for modality in modalities:
        if modality not in _KINDS_OF:
            raise ValueError(f"modalities: unknown modality {modality!r}")
        kinds += [k for k in _KINDS_OF[modality] if k not in kinds]
    return tuple(kinds)


@dataclass(frozen=True)
class _Entry:
    """Where one video's frames of one kind lie in the kind's data file."""

    offset: int
    frames: int
    height: int
    width: int
    channels: int

    @property
    def frame_bytes(self) -> int:
        return self.height * self.width * self.channels


class FrameStore:
    """Decoded frames of one dataset at one ``scale_size``; a :class:`FrameDecoder`.

    Build or open one with :meth:`open`. ``read`` serves frames of the dataset's own files and
    raises ``KeyError`` for any other path. Pickling (DataLoader workers under ``spawn``) carries
    the layout, not the mapped memory; each process maps the files again.
    """

    def __init__(self, directory: Path, scale_size: int, layout: dict[str, list[_Entry]]) -> None:
        self.directory = directory
        self.scale_size = scale_size
        self.kinds = tuple(layout)
        self._layout = layout
        self._where: dict[Path, tuple[str, int, int]] = {}
        self._maps: dict[str, np.memmap] = {}

    @classmethod
    def open(
        cls,
        index: DatasetIndex,
        cache_dir: str | Path,
        *,
        scale_size: int,
        modalities: Sequence[str] = ("rgb",),
        workers: int | None = None,
    ) -> FrameStore:
        """The store of ``index`` at ``scale_size`` holding what ``modalities`` read; kinds that
        are missing or invalid are (re)built first, decoding on ``workers`` threads (default:
        the CPUs this process may use)."""
        kinds = store_kinds(modalities)
        fingerprint = dataset_fingerprint(index)
        directory = Path(cache_dir).expanduser() / f"{fingerprint[:16]}-s{scale_size}"
        opened = _OPENED.get((directory, kinds))
        sources = _sources_digest(index.videos, kinds)
        if opened is not None and opened.files == (_identities(directory, kinds), sources):
            return opened.store
        workers = workers or _usable_cpus()
        _make_folder(directory)
        spec = _Spec(directory, fingerprint, scale_size, index.videos)
        lock = directory.with_name(directory.name + ".lock")
        with _locked(lock, shared=True):
            problems = {kind: spec.problem(kind, workers) for kind in kinds}
            if not any(problems.values()):
                return cls._mapped(spec, kinds, index, sources)
        with _locked(lock, shared=False):
            for kind in kinds:
                problem = spec.problem(kind, workers)  # another process may have built it
                if problem is None:
                    continue
                if problem == _TOUCHED:
                    spec.refresh_sources(kind, workers)
                    continue
                if problem != "absent":
                    warnings.warn(
                        f"frame store {directory / kind}.u8 is invalid ({problem}); rebuilding",
                        FrameStoreWarning,
                        stacklevel=2,
                    )
                spec.build(kind, workers)
            return cls._mapped(spec, kinds, index, sources)

    @classmethod
    def _mapped(
        cls, spec: _Spec, kinds: tuple[str, ...], index: DatasetIndex, sources: str
    ) -> FrameStore:
        """The checked store, mapped; ``sources`` is the digest of the source frames taken
        before the check (a frame changed since gives the next open another digest)."""
        layout = {kind: spec.entries(kind) for kind in kinds}
        store = cls(spec.directory, spec.scale_size, layout)
        store._index_paths(index.videos)
        for kind in kinds:
            store._map(kind)  # while the lock keeps the checked file in place
        _OPENED[spec.directory, kinds] = _Opened(
            store, (_identities(spec.directory, kinds), sources)
        )
        return store

    def _index_paths(self, videos: Sequence[Video]) -> None:
        for kind in self.kinds:
            for position, video in enumerate(videos):
                for row, path in enumerate(getattr(video, kind)):
                    self._where[path] = (kind, position, row)

    def _map(self, kind: str) -> np.memmap:
        if kind not in self._maps:
            self._maps[kind] = np.memmap(self.directory / f"{kind}.u8", dtype=np.uint8, mode="r")
        return self._maps[kind]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": {}}

    def read(self, paths: Sequence[Path], mode: Mode) -> torch.Tensor:
        """uint8 ``(N, C, H, W)`` (channels-last memory) of ``paths``, already at
        ``scale_size``."""
        if not paths:
            raise ValueError("paths: nothing to read")
        frames = []
        for path in paths:
            kind, position, row = self._where[path if isinstance(path, Path) else Path(path)]
            if _MODES[kind] != mode:
                raise ValueError(f"mode: {path} is stored as {_MODES[kind]}, not {mode}")
            entry = self._layout[kind][position]
            start = entry.offset + row * entry.frame_bytes
            data = self._map(kind)[start : start + entry.frame_bytes]
            frames.append(data.reshape(entry.height, entry.width, entry.channels))
        return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # (N, C, H, W)


@dataclass(frozen=True)
class _Opened:
    """A store this process checked, and the identity of its files when it did."""

    store: FrameStore
    files: tuple[tuple[tuple[int, int, int], ...], str]
    """The store's files (inode, size, modification time) and a digest of the source frames'
    sizes and modification times, when it was checked."""


_OPENED: dict[tuple[Path, tuple[str, ...]], _Opened] = {}
"""Stores opened by this process. Checking a store reads all of it (2 s for GTEA61's 8 GB of
RGB); a process that opens the same store again (a reused trial worker) takes the checked one
while its files are the very files checked (same inode, size and modification time) and no
source frame has a new size or modification time."""


def _sources_digest(videos: Sequence[Video], kinds: Sequence[str]) -> str:
    """A digest of every source frame's path, size and modification time."""
    digest = hashlib.sha256()
    for video in videos:
        for kind in kinds:
            for path in getattr(video, kind):
                stat = os.stat(path)
                digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _identities(directory: Path, kinds: Sequence[str]) -> tuple[tuple[int, int, int], ...]:
    """(inode, size, mtime) of each kind's data file and manifest; zeros when absent."""
    found = []
    for kind in kinds:
        for name in (f"{kind}.u8", f"{kind}.json"):
            try:
                stat = (directory / name).stat()
            except OSError:
                found.append((0, 0, 0))
                continue
            found.append((stat.st_ino, stat.st_size, stat.st_mtime_ns))
    return tuple(found)


@dataclass(frozen=True)
class _Spec:
    """What a store folder must hold for one dataset and scale: checks and builds its kinds."""

    directory: Path
    fingerprint: str
    scale_size: int
    videos: Sequence[Video]

    def manifest(self, kind: str) -> Path:
        return self.directory / f"{kind}.json"

    def data(self, kind: str) -> Path:
        return self.directory / f"{kind}.u8"

    def entries(self, kind: str) -> list[_Entry]:
        saved = json.loads(self.manifest(kind).read_text())
        return [_Entry(**{k: v[k] for k in _Entry.__dataclass_fields__}) for v in saved["videos"]]

    def problem(self, kind: str, workers: int) -> str | None:
        """Why the stored ``kind`` cannot be used (``absent`` when never built), or None."""
        if not self.manifest(kind).exists():
            return "absent"
        try:
            saved = json.loads(self.manifest(kind).read_text())
            expected = {
                "format": FORMAT,
                "fingerprint": self.fingerprint,
                "scale_size": self.scale_size,
                "kind": kind,
            }
            for key, value in expected.items():
                if saved.get(key) != value:
                    return f"manifest {key} is {saved.get(key)!r}, expected {value!r}"
            videos = saved["videos"]
            if [(v["name"], v["frames"]) for v in videos] != [
                (v.name, len(getattr(v, kind))) for v in self.videos
            ]:
                return "manifest lists other videos"
            entries = self.entries(kind)
            sources = [v["sources"] for v in videos]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"unreadable manifest: {exc}"
        changed = self._source_problem(kind, sources, workers)
        if changed is not None and changed != _TOUCHED:
            return changed
        return self._data_problem(kind, entries, [v["crc32"] for v in videos], workers) or changed

    def _source_problem(
        self, kind: str, sources: list[list[list[int]]], workers: int
    ) -> str | None:
        """Whether a source frame changed since the store was built: a frame whose size or
        modification time differs from the record is read again and its checksum compared.
        ``_TOUCHED`` when only modification times changed."""

        def check(pair: tuple[Video, list[list[int]]]) -> str | None:
            video, recorded = pair
            paths = getattr(video, kind)
            if len(recorded) != len(paths):
                return "manifest lists other frames"
            found = None
            for path, (size, mtime, crc) in zip(paths, recorded, strict=True):
                stat = os.stat(path)
                if stat.st_size == size and stat.st_mtime_ns == mtime:
                    continue
                if stat.st_size != size or zlib.crc32(Path(path).read_bytes()) != crc:
                    return f"{path} changed since the store was built"
                found = _TOUCHED
            return found

        with ThreadPoolExecutor(workers) as pool:
            found = list(pool.map(check, zip(self.videos, sources, strict=True)))
        problems = [p for p in found if p is not None and p != _TOUCHED]
        return problems[0] if problems else (_TOUCHED if _TOUCHED in found else None)

    def refresh_sources(self, kind: str, workers: int) -> None:
        """Record the source frames' new modification times (their bytes are unchanged)."""
        saved = json.loads(self.manifest(kind).read_text())
        with ThreadPoolExecutor(workers) as pool:
            stamps = list(pool.map(lambda v: _source_stamps(getattr(v, kind)), self.videos))
        for video, stamp in zip(saved["videos"], stamps, strict=True):
            if [s[0::2] for s in stamp] != [s[0::2] for s in video["sources"]]:
                raise FrameStoreError(f"frame store {self.directory}: {kind} frames changed")
            video["sources"] = stamp
        _write_atomically(self.manifest(kind), json.dumps(saved, indent=1))

    def _data_problem(
        self, kind: str, entries: list[_Entry], crcs: list[int], workers: int
    ) -> str | None:
        path = self.data(kind)
        expected = sum(e.frames * e.frame_bytes for e in entries)
        size = path.stat().st_size if path.exists() else None
        if size != expected:
            return f"{path.name} has {size} bytes, the manifest {expected}"
        if expected == 0:
            return None
        data = np.memmap(path, dtype=np.uint8, mode="r")

        def crc(entry: _Entry) -> int:
            end = entry.offset + entry.frames * entry.frame_bytes
            return zlib.crc32(data[entry.offset : end].data)

        with ThreadPoolExecutor(workers) as pool:
            found = list(pool.map(crc, entries))
        for video, got, want in zip(self.videos, found, crcs, strict=True):
            if got != want:
                return f"checksum of {video.name} differs"
        return None

    def build(self, kind: str, workers: int) -> None:
        """Decode every video's ``kind`` frames into the data file, then write the manifest."""
        self.manifest(kind).unlink(missing_ok=True)  # from here on the kind counts as absent
        partial = self.data(kind).with_suffix(".u8.partial")
        self._check_space(kind, partial)
        entries, crcs, offset = [], [], 0
        sources: list[list[list[int]]] = []
        try:
            with partial.open("wb") as out, ThreadPoolExecutor(workers) as pool:
                decode = _decoder_for(kind, self.scale_size)
                for stamps, array in _ordered_map(pool, decode, self.videos, ahead=2 * workers):
                    sources.append(stamps)
                    frames, height, width, channels = array.shape
                    out.write(array.data.cast("B"))
                    entries.append(_Entry(offset, frames, height, width, channels))
                    crcs.append(zlib.crc32(array.data.cast("B")))
                    offset += array.nbytes
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise FrameStoreError(f"frame store {self.directory}: cannot write ({exc})") from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, self.data(kind))
        record = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "scale_size": self.scale_size,
            "kind": kind,
            "mode": _MODES[kind],
            "bytes": offset,
            "videos": [
                {"name": v.name, **e.__dict__, "crc32": c, "sources": stamps}
                for v, e, c, stamps in zip(self.videos, entries, crcs, sources, strict=True)
            ],
        }
        _write_atomically(self.manifest(kind), json.dumps(record, indent=1))

    def _check_space(self, kind: str, partial: Path) -> None:
        partial.unlink(missing_ok=True)  # a dead builder's leftovers (we hold the lock)
        needed = estimate_bytes(self.videos, kind, self.scale_size)
        free = shutil.disk_usage(self.directory).free
        if free < needed + _SPACE_MARGIN:
            raise FrameStoreError(
                f"frame store {self.directory}: {kind} needs {needed / 2**30:.1f} GiB and "
                f"{free / 2**30:.1f} GiB are free; free space, choose another frame_store_dir "
                "or set frame_store=off"
            )


def estimate_bytes(videos: Sequence[Video], kind: str, scale_size: int) -> int:
    """Bytes of the stored ``kind``, from each video's first frame header (nothing decoded)."""
    channels = 3 if _MODES[kind] == "RGB" else 1
    total = 0
    for video in videos:
        paths = getattr(video, kind)
        if not paths:
            continue
        try:
            with Image.open(paths[0]) as image:
                width, height = image.size
        except OSError:
            continue  # the decode reports it, naming the file
        ratio = scale_size / min(width, height)
        total += len(paths) * channels * round(width * ratio) * round(height * ratio)
    return total


def _decoder_for(
    kind: str, scale_size: int
) -> Callable[[Video], tuple[list[list[int]], np.ndarray]]:
    reader = PILFrameDecoder()

    def decode(video: Video) -> tuple[list[list[int]], np.ndarray]:
        paths = getattr(video, kind)
        stamps = _source_stamps(paths)  # before decoding: a later change shows as a new time
        frames = scale_frames(reader.read(paths, _MODES[kind]), scale_size)
        return stamps, frames.permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, C)

    return decode


def _source_stamps(paths: Sequence[Path]) -> list[list[int]]:
    """``[size, modification time (ns), CRC-32 of the bytes]`` of each source frame file."""
    stamps = []
    for path in paths:
        stat = os.stat(path)
        stamps.append([stat.st_size, stat.st_mtime_ns, zlib.crc32(Path(path).read_bytes())])
    return stamps


def _ordered_map(
    pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], *, ahead: int
) -> Iterator[R]:
    """``pool.map`` that keeps at most ``ahead`` results waiting, bounding memory."""
    pending: deque[Future[R]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: the CPUs this process may run on
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _make_folder(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FrameStoreError(
            f"frame store {directory}: cannot create the folder ({exc}); choose another "
            "frame_store_dir or set frame_store=off"
        ) from exc


@contextlib.contextmanager
def _locked(path: Path, *, shared: bool) -> Iterator[None]:
    """Hold ``flock`` on ``path`` (created if needed); closing the descriptor releases it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise FrameStoreError(f"frame store lock {path}: cannot open ({exc})") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_suffix(path.suffix + ".partial")
    with partial.open("w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the renames themselves survive a power cut
    finally:
        os.close(directory)
