"""Where egotune keeps what a node can rebuild: ``$EGOTUNE_CACHE_DIR/<kind>``, else
``$XDG_CACHE_HOME/egotune/<kind>`` or ``~/.cache/egotune/<kind>`` (decoded-frame stores,
the local mirror of a bucket's tables)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(kind: str) -> Path:
    """The node's cache folder for ``kind`` (``frames``, ``storage``)."""
    if os.environ.get("EGOTUNE_CACHE_DIR"):
        return Path(os.environ["EGOTUNE_CACHE_DIR"]).expanduser() / kind
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "egotune" / kind
