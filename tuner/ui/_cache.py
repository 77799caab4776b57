"""The experiments of a storage folder, read by :mod:`tuner.results` and kept until they change.

A search keeps writing while the pages are open, so every request first takes the folder's
*change stamp*: the size and modification time of ``trials.parquet`` and ``experiment.json``, and
the completed part files of ``epochs.parquet/`` and of any other table kept as part files (never
changed once renamed into place, numbered in order). Only stat calls and directory listings: a
page polls it every few seconds for free. An experiment is read again only when its stamp moved,
and whatever the pages computed from it (pivots, importances) is kept with it until then.

Nothing here writes: the folder is only listed, stat'ed and read by ``tuner.results``.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuner import results
from tuner.errors import EgotuneError

__all__ = ["ExperimentCache", "Snapshot", "change_stamp"]


def change_stamp(path: Path) -> str:
    """A short text that changes whenever the tables of experiment folder ``path`` change.

    It covers ``experiment.json`` and every ``*.parquet`` file or folder of part files in it
    (the trials and epochs tables, and any table added to the layout later).
    """
    parts = []
    try:
        with os.scandir(path) as entries:
            tables = sorted(
                (e.name, e.is_dir())
                for e in entries
                if e.name.endswith(".parquet") or e.name == results.METADATA_FILE
            )
    except OSError:
        tables = []
    for name, is_folder in tables:
        parts.append(
            f"{name}={_folder_stamp(path / name) if is_folder else _file_stamp(path / name)}"
        )
    return hashlib.blake2b("|".join(parts).encode(), digest_size=8).hexdigest()


def _file_stamp(path: Path) -> str:
    try:
        info = path.stat()
    except OSError:
        return "-"
    return f"{info.st_mtime_ns}:{info.st_size}"


def _folder_stamp(path: Path) -> str:
    """Part files are never changed once renamed into place, and numbered in order."""
    try:
        with os.scandir(path) as entries:
            done = [
                e.name for e in entries if e.name.endswith(".parquet") and e.name[0] not in "._"
            ]
    except OSError:
        return "-"
    return f"{len(done)}:{max(done, default='')}"


@dataclass
class Snapshot:
    """One experiment as read at one stamp; ``experiment`` is ``None`` when it could not be read."""

    name: str
    path: Path
    stamp: str
    experiment: results.Experiment | None
    warnings: list[str]
    """What ``tuner.results`` warned about while reading (a damaged part file, a newer schema)."""
    error: str | None = None
    derived: dict[Any, Any] = field(default_factory=dict)
    """Payloads the pages computed from this snapshot, by request."""


class ExperimentCache:
    """Experiments of ``storage`` by name, read once per change stamp (the ``size`` latest kept)."""

    def __init__(self, storage: Path, size: int = 8) -> None:
        self.storage = storage
        self._size = size
        self._snapshots: OrderedDict[str, Snapshot] = OrderedDict()
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """The experiment folders in the storage folder, by name (empty when it does not exist)."""
        if not self.storage.is_dir():
            return []
        return sorted(
            path.name
            for path in self.storage.iterdir()
            if not path.name.startswith(("_", ".")) and _is_experiment(path)
        )

    def path_of(self, name: str) -> Path | None:
        """The folder of experiment ``name``, only a folder directly in the storage folder."""
        if not name or name.startswith(("_", ".")) or name != Path(name).name:
            return None
        path = self.storage / name
        return path if _is_experiment(path) else None

    def stamp(self, name: str) -> str | None:
        path = self.path_of(name)
        return None if path is None else change_stamp(path)

    def get(self, name: str) -> Snapshot | None:
        """Experiment ``name`` as its files are now; ``None`` when there is no such experiment."""
        path = self.path_of(name)
        if path is None:
            return None
        stamp = change_stamp(path)
        with self._lock:  # one read at a time: catch_warnings is process-wide
            snapshot = self._snapshots.get(name)
            if snapshot is None or snapshot.stamp != stamp:
                snapshot = _read(name, path, stamp, self.storage)
                self._snapshots[name] = snapshot
            self._snapshots.move_to_end(name)
            while len(self._snapshots) > self._size:
                self._snapshots.popitem(last=False)
            return snapshot


def _is_experiment(path: Path) -> bool:
    names = (results.TRIALS_FILE, results.EPOCHS_DIR, results.METADATA_FILE)
    return path.is_dir() and any((path / name).exists() for name in names)


def _read(name: str, path: Path, stamp: str, storage: Path) -> Snapshot:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            experiment = results.load_experiment(name, storage)
        except (EgotuneError, ValueError, OSError) as exc:
            return Snapshot(name, path, stamp, None, _messages(caught), error=str(exc))
    return Snapshot(name, path, stamp, experiment, _messages(caught))


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    return list(dict.fromkeys(str(w.message) for w in caught))
