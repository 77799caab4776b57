"""Atomic file writes: a reader sees the old file or the new one, never a half-written one.

Every file egotune writes that another process may read while it is written (checkpoints, the
Parquet tables, the experiment record, prerequisite records, ``egotune train``'s log) goes through
:func:`write_atomic`: the bytes go to a temporary file in the same folder, which is flushed and
fsynced, renamed over the target, and the folder is fsynced so the rename survives a power cut.
If writing fails, the temporary file is removed and the target is left as it was.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["write_atomic", "write_json_atomic", "write_text_atomic"]


def write_atomic(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Create or replace ``path`` with what ``write(file)`` writes, all or nothing."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`write_atomic` of UTF-8 ``text``."""
    return write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def write_json_atomic(path: str | os.PathLike[str], value: Any) -> Path:
    """:func:`write_atomic` of ``value`` as indented JSON with sorted keys."""
    return write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True))


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
