"""Checkpoint files: plain state dicts written atomically and read with ``weights_only=True``.

A checkpoint is never half-written: it is saved to a temporary file in the same folder, flushed to
disk and renamed over the target. Loading never unpickles arbitrary objects, so a checkpoint from an
untrusted storage cannot run code; a file that is not a readable egotune checkpoint raises
:class:`CheckpointError` naming it, and nothing silently restarts from scratch.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuner.atomic import write_atomic
from tuner.errors import EgotuneError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "egotune-checkpoint-v1"


class CheckpointError(EgotuneError):
    """A checkpoint file is missing, truncated, corrupt or of another format."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, **state}
    return write_atomic(target, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"{source}: checkpoint not found")
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise _corrupt(source, exc) from None
        raise CheckpointError(
            f"{source}: refused to load: it holds pickled objects other than tensors and plain "
            f"values ({_unpickling_detail(exc)}); use a checkpoint that egotune wrote"
        ) from None
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise _corrupt(source, exc) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{source}: not an egotune checkpoint ({CHECKPOINT_FORMAT})")
    return state


def _corrupt(source: Path, exc: BaseException) -> CheckpointError:
    return CheckpointError(
        f"{source}: cannot read checkpoint ({type(exc).__name__}: {_first_line(exc)}); "
        "the file is corrupt or truncated - restore it or start a new run in another folder"
    )


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), repr(exc))


def _unpickling_detail(exc: pickle.UnpicklingError) -> str:
    """The line of torch's ``weights_only`` refusal that names the blocked object.

    torch's message also suggests ``weights_only=False``, which is exactly what must not be done
    with a file of unknown origin, so only the blocked object is kept.
    """
    for line in str(exc).splitlines():
        if "GLOBAL" in line or "global" in line:
            return line.strip().rstrip(".")
    return _first_line(exc)


def capture_rng_state() -> dict[str, Any]:
    """torch, CUDA, numpy and python RNG states in a ``weights_only``-loadable form."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_plain(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]
