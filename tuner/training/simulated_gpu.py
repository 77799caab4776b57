"""A stand-in for a GPU's step time, so that a CPU machine measures what a GPU run spends around it.

On a real GPU the Fig. 10 model's training step takes 27 ms per batch of 32 clips at T = 16,
224 px (H200, CUDA graphs; ``../shared/gpu-pace``), and everything the host does around the
steps (loader set-up, validation set-up, synchronisation, records, checkpoints) is what keeps the
GPU waiting. With ``EGOTUNE_SIMULATED_GPU`` set to a folder, the engine replaces each batch's
model step (forward, backward and optimiser step) by a wait of that recorded time, scaled by the
batch's clips, frames and pixels, and runs everything else as usual. The waits of every process
that shares the folder are serialised by a lock on ``gpu.lock`` there, as kernels of several
trials are on one GPU, and each process appends its busy intervals to ``busy-<pid>.log``
(``start end kind`` per line, ``time.time()`` seconds), which ``egotune bench gpu_pace`` reads.

This is a benchmark instrument: nothing is learnt in a simulated run (the logits are zeros).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Any

import torch

from tuner.training.recipes import StepOutput

__all__ = ["ENV_FOLDER", "ENV_STEP_MS", "SimulatedGPU", "read_busy"]

ENV_FOLDER = "EGOTUNE_SIMULATED_GPU"
ENV_STEP_MS = "EGOTUNE_SIMULATED_STEP_MS"
STEP_MS = 27.0
"""Recorded training step of the Fig. 10 model on an H200: ms per 32 clips of 16 frames at
224 px."""
FORWARD_SHARE = 0.6
"""A validation batch's share of a training step of the same size: forward FLOPs over forward
and backward FLOPs of the Fig. 10 model (147 / 243 GFLOPs per clip)."""
_REFERENCE = 32 * 16 * 224 * 224  # clips x frames x pixels of the recorded step


class SimulatedGPU:
    """Waits of recorded GPU duration in place of model steps (see the module docstring)."""

    def __init__(self, folder: str | Path, step_ms: float = STEP_MS) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.seconds_per_unit = step_ms / 1000 / _REFERENCE
        self._lock_fd = os.open(self.folder / "gpu.lock", os.O_RDWR | os.O_CREAT, 0o666)
        self._log = (self.folder / f"busy-{os.getpid()}.log").open("a", buffering=1)

    @classmethod
    def from_environment(cls) -> SimulatedGPU | None:
        folder = os.environ.get(ENV_FOLDER)
        if not folder:
            return None
        return cls(folder, float(os.environ.get(ENV_STEP_MS) or STEP_MS))

    def step(
        self, batch: dict[str, torch.Tensor], num_classes: int, *, train: bool, crop: int
    ) -> StepOutput:
        """The wait of one batch's step; returns zero logits and a zero loss of its shape."""
        labels = batch["label"]
        clips = int(labels.shape[0])
        frames = _frames(batch)
        seconds = self.seconds_per_unit * clips * frames * crop * crop
        self.run(seconds if train else seconds * FORWARD_SHARE, "train" if train else "val")
        zero = torch.zeros((), device=labels.device)
        return StepOutput(zero, torch.zeros(clips, num_classes, device=labels.device), zero)

    def run(self, seconds: float, kind: str) -> None:
        """Hold the simulated GPU for ``seconds``."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            start = time.time()
            time.sleep(seconds)
            end = time.time()
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        self._log.write(f"{start:.6f} {end:.6f} {kind}\n")


def _frames(batch: dict[str, Any]) -> int:
    for key in ("rgb", "flow"):
        if key in batch:
            tensor = batch[key]
            return int(tensor.shape[1]) if tensor.dim() == 5 else 1
    return 1


def read_busy(folder: str | Path) -> list[tuple[float, float, str, int]]:
    """Every busy interval logged in ``folder``: ``(start, end, kind, pid)``, by start."""
    intervals = []
    for path in Path(folder).glob("busy-*.log"):
        pid = int(path.stem.split("-", 1)[1])
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                intervals.append((float(parts[0]), float(parts[1]), parts[2], pid))
    return sorted(intervals)
