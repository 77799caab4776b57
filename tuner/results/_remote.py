"""Experiments in object storage (``s3://``, ``gs://``, any URI ``pyarrow.fs`` opens), read
through a local mirror of their tables.

``egotune results ... --storage s3://bucket/prefix`` copies what the readers need of each
experiment: ``experiment.json``, ``trials.parquet``, ``exploits.parquet`` and the part files of
``epochs.parquet/`` and ``predictions.parquet/`` (never checkpoints), into
``$EGOTUNE_CACHE_DIR/storage/<scheme>/<bucket>/<prefix>/`` (else the XDG cache folder), then
reads the copy with the same readers as a local folder. A part file is written once under a
unique name, so a later read fetches only the parts added since, and the files that changed
(``trials.parquet``, by size and modification time); a file gone from the bucket goes from the
mirror. Each copy is written to a temporary name
and renamed, so a reader never sees half a file.

Credentials come from pyarrow's standard chains (environment, config files, instance roles);
``AWS_ENDPOINT_URL`` points it at an S3-compatible server. Nothing of them is written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tuner.cache import cache_dir
from tuner.errors import EgotuneError

__all__ = ["is_uri", "mirror_storage"]

_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_TABLE_FILES = ("experiment.json", "trials.parquet", "exploits.parquet")
_PART_DIRS = ("epochs.parquet", "predictions.parquet")


def is_uri(storage: str | os.PathLike[str] | None) -> bool:
    """``storage`` names a filesystem by URI (``s3://...``) rather than a local folder."""
    return (
        isinstance(storage, str) and bool(_URI.match(storage)) and not storage.startswith("file:")
    )


def mirror_storage(uri: str, experiments: list[str] | None = None, *, tables: bool = True) -> Path:
    """The local mirror of the experiments under ``uri`` (``None``: every experiment), brought up
    to date; ``tables=False`` copies ``experiment.json`` and ``trials.parquet`` only (a listing).

    A bucket or prefix that cannot be read is an :class:`EgotuneError` naming ``uri``.
    """
    import pyarrow.fs as pafs

    try:
        filesystem, root = pafs.FileSystem.from_uri(uri)
        if filesystem.get_file_info(root).type == pafs.FileType.NotFound:
            raise EgotuneError(f"--storage {uri}: no such bucket or prefix")
        if experiments is None:
            listing = filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True))
            experiments = [Path(i.path).name for i in listing if i.type == pafs.FileType.Directory]
        local = cache_dir("storage") / _local_name(uri)
        local.mkdir(parents=True, exist_ok=True)
        for name in experiments:
            _mirror_experiment(filesystem, f"{root.rstrip('/')}/{name}", local / name, tables)
    except EgotuneError:
        raise
    except (OSError, ValueError) as exc:
        raise EgotuneError(f"--storage {uri}: cannot read it ({_first_line(exc)})") from None
    return local


def _mirror_experiment(filesystem: Any, remote: str, local: Path, tables: bool) -> None:
    import pyarrow.fs as pafs

    names = [f"{remote}/{name}" for name in _TABLE_FILES[: None if tables else 2]]
    wanted = [i for i in filesystem.get_file_info(names) if i.type == pafs.FileType.File]
    for folder in _PART_DIRS if tables else ():
        selector = pafs.FileSelector(f"{remote}/{folder}", allow_not_found=True)
        wanted += [i for i in filesystem.get_file_info(selector) if i.path.endswith(".parquet")]
    present = {local / info.path[len(remote) + 1 :] for info in wanted}
    mirrored = [local / name for name in _TABLE_FILES[: None if tables else 2]]
    for folder in _PART_DIRS if tables else ():
        mirrored += (local / folder).glob("*.parquet")
    for gone in set(mirrored) - present:
        gone.unlink(missing_ok=True)  # deleted or rewritten away in the bucket
    for info in wanted:
        target = local / info.path[len(remote) + 1 :]
        if _same(target, info):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        with filesystem.open_input_stream(info.path) as source, partial.open("wb") as copy:
            while chunk := source.read(1 << 20):
                copy.write(chunk)
        if info.mtime_ns is not None:
            os.utime(partial, ns=(info.mtime_ns, info.mtime_ns))
        partial.replace(target)


def _same(target: Path, info: Any) -> bool:
    if not target.is_file():
        return False
    stat = target.stat()
    return stat.st_size == info.size and (
        info.mtime_ns is None or stat.st_mtime_ns == info.mtime_ns
    )


def _local_name(uri: str) -> Path:
    scheme, _, rest = uri.partition("://")
    parts = [p for p in rest.split("/") if p and p not in (".", "..")]
    return Path(scheme, *parts)


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
