"""What the command line accepts as an experiment name and as a path flag.

An experiment is the folder ``<storage>/<name>/``, and its name goes into commands the search
prints (``egotune results top NAME``), into the UI's addresses and into Ray's metric tags. A name
is therefore one plain folder name: letters (any script) and digits, then also ``-``, ``_``, ``.``,
``+``, ``=`` and ``@``; no path separator, no ``..``, not hidden (a leading dot: ``results list``
and the UI skip such folders), and at most 200 bytes in UTF-8 so that Tune's folder names built
from it stay under the file system's 255.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import overload

from tuner.errors import UsageError

__all__ = [
    "MAX_NAME_BYTES",
    "NOT_PATHS",
    "PATH_KEYS",
    "absolute_path",
    "absolute_set_values",
    "check_experiment_name",
    "storage_location",
]

MAX_NAME_BYTES = 200
_PUNCTUATION = frozenset("-_.+=@")
PATH_KEYS = frozenset(
    {"init_checkpoint", "rgb_checkpoint", "flow_checkpoint", "frame_store_dir", "weights"}
)
"""Configuration keys that hold a path (``weights`` also takes ``imagenet`` or ``none``)."""
NOT_PATHS = frozenset({"", "imagenet", "none", "null", "~"})
"""Values of :data:`PATH_KEYS` that are not paths."""


def check_experiment_name(name: str, flag: str) -> str:
    """``name`` when it is a safe experiment name, else a :class:`UsageError` naming ``flag``."""
    problem = _name_problem(name)
    if problem is not None:
        raise UsageError(
            f"{flag} {name}: {problem}; an experiment name is one folder name of letters, "
            "digits and - _ . + = @ (e.g. fig10-lr), not starting with a dot"
        )
    return name


def _name_problem(name: str) -> str | None:
    if not name:
        return "empty"
    if os.sep in name or "/" in name or "\\" in name or Path(name).is_absolute():
        return "a path, not a name"
    if ".." in name:
        return "contains .."
    if name.startswith("."):
        return "starts with a dot (hidden folders are not listed)"
    odd = sorted({c for c in name if not (c.isalnum() or c in _PUNCTUATION)})
    if odd:
        return f"characters not allowed: {' '.join(repr(c) for c in odd)}"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} bytes"
    return None


@overload
def absolute_path(path: Path) -> Path: ...
@overload
def absolute_path(path: None) -> None: ...
@overload
def absolute_path(path: Path | None) -> Path | None: ...
def absolute_path(path: Path | None) -> Path | None:
    """``path`` with ``~`` expanded and made absolute against the working folder, so that
    processes working elsewhere (Ray's trial workers) find it; symbolic links are kept."""
    return None if path is None else Path(os.path.abspath(path.expanduser()))


def absolute_set_values(assignments: list[str]) -> list[str]:
    """``--set KEY=PATH`` assignments of :data:`PATH_KEYS` with relative paths made absolute
    (:func:`absolute_path`); every other assignment (a URI such as ``s3://...`` included)
    unchanged."""
    result = []
    for item in assignments:
        key, sep, value = item.partition("=")
        path = value.strip()
        if sep and key.strip() in PATH_KEYS and path.lower() not in NOT_PATHS and "://" not in path:
            item = f"{key}={absolute_path(Path(path))}"
        result.append(item)
    return result


def storage_location(text: str) -> Path | str:
    """A ``--storage`` value: a local folder, or a filesystem URI (``s3://bucket/prefix``, kept
    as text: a path would turn its ``//`` into ``/``)."""
    if "://" in text and not text.startswith("file://"):
        return text
    return Path(text.removeprefix("file://"))
