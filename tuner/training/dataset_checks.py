"""A search's dataset check: every frame decodes, checked once per dataset version.

Decoding every frame of the real GTEA61 takes a minute, so a search records what it checked in
``<storage>/_dataset_checks/<fingerprint>.json``: each frame's size and modification time. A later
search decodes again only the frames whose size or time changed since. The fingerprint alone
(paths and sizes) would miss a frame rewritten in place at its old size.
"""

from __future__ import annotations

import json
from pathlib import Path

from data_pipeline import DatasetIndex, dataset_fingerprint, frame_stamps, verify_frames
from tuner.atomic import write_json_atomic

__all__ = ["DATASET_CHECKS_DIR", "verify_once"]

DATASET_CHECKS_DIR = "_dataset_checks"


def verify_once(index: DatasetIndex, storage: Path) -> None:
    """Decode the frames of ``index`` not checked before in ``storage`` (``DatasetError`` naming
    the first that fails); record them as checked."""
    record = storage / DATASET_CHECKS_DIR / f"{dataset_fingerprint(index)}.json"
    stamps = frame_stamps(index)
    checked = _checked(record)
    changed = [index.root / name for name, stamp in stamps.items() if checked.get(name) != stamp]
    if not changed:
        return
    verify_frames(index, only=changed)
    frames = {name: list(stamp) for name, stamp in stamps.items()}
    record.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record, {"root": str(index.root), "frames": frames})


def _checked(record: Path) -> dict[str, tuple[int, int]]:
    try:
        frames = json.loads(record.read_text())["frames"]
        return {str(name): (int(size), int(mtime)) for name, (size, mtime) in frames.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # never checked here, or a record of another version: check them all
