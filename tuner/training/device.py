"""How a run's model is prepared for its device: memory format, autocast and compilation.

On CUDA, ``channels_last: true`` stores the 2-D convolutions' weights channels-last (the layout
tensor cores read fastest in bf16), ``precision: bf16`` runs the steps under bf16 autocast, and
``compile`` hands each child module of the model to ``torch.compile``:

* ``off``: eager, as the report's code runs;
* ``default``: TorchInductor's fused kernels;
* ``reduce-overhead``: the same, replayed as CUDA graphs, which removes the per-kernel launch
  cost that bounds an eager step of these models at GPU pace (docs/performance.md);
* ``auto``: ``reduce-overhead`` on CUDA for a run of at least :data:`AUTO_COMPILE_STEPS`
  training steps, where its warm-up pays back, else ``off``.

The CPU runs fp32 with the default layout (``compile`` other than ``auto`` applies there too).
:meth:`DevicePlan.for_config` with ``as_on_cuda=True`` applies CUDA's preparation on the CPU
instead (CPU bf16 autocast), so a CPU test takes every model through the same path a GPU run
takes.

Compiling in place (``nn.Module.compile``) keeps the state-dict keys, so checkpoints of compiled
and eager runs are interchangeable.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tuner.training.checks import COMPILE_MODES
from tuner.training.config import TrainConfig

__all__ = ["AUTO_COMPILE_STEPS", "COMPILE_MODES", "DevicePlan", "to_channels_last"]

AUTO_COMPILE_STEPS = 2000
"""Training steps from which ``compile: auto`` compiles on CUDA: at the Fig. 10 model's eager
and CUDA-graph steps (36 and 27 ms per batch of 32 on an H200) 2,000 steps save about 18 s, about
what compiling its modules costs once."""


@dataclass(frozen=True)
class DevicePlan:
    """The preparation of one run's model (see the module docstring)."""

    device: torch.device
    channels_last: bool = False
    autocast_dtype: torch.dtype | None = None
    compile_mode: str | None = None
    """``default`` or ``reduce-overhead``; ``None``: eager."""
    compile_backend: str = "inductor"
    """``torch.compile``'s backend; tests on the CPU take ``aot_eager`` (the same graph capture
    without generating kernels, which takes a minute per model there)."""

    @classmethod
    def for_config(
        cls,
        config: TrainConfig,
        device: torch.device,
        *,
        as_on_cuda: bool = False,
        planned_steps: int | None = None,
    ) -> DevicePlan:
        """The plan ``config`` asks for on ``device``. ``planned_steps`` (training steps of the
        whole run) decides ``compile: auto``."""
        cuda = device.type == "cuda" or as_on_cuda
        mode: str | None = config.compile
        if mode == "auto":
            long_run = planned_steps is None or planned_steps >= AUTO_COMPILE_STEPS
            mode = "reduce-overhead" if device.type == "cuda" and long_run else "off"
        return cls(
            device=device,
            channels_last=config.channels_last and cuda,
            autocast_dtype=torch.bfloat16 if config.precision == "bf16" and cuda else None,
            compile_mode=None if mode == "off" else mode,
        )

    def prepare(self, model: nn.Module) -> nn.Module:
        """``model`` (already on the device) in the plan's memory format, compiled in place."""
        if self.channels_last:
            to_channels_last(model)
        if self.compile_mode is not None:
            inductor = self.compile_backend == "inductor"
            mode = self.compile_mode if inductor else None
            for child in model.children():
                child.compile(mode=mode, backend=self.compile_backend)
        return model

    def autocast(self) -> Any:
        """The context a forward pass runs in."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def mark_step(self) -> None:
        """Before each forward pass: CUDA graphs may reuse the previous step's output memory."""
        if self.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store the 4-D parameters and buffers of ``model`` channels-last, in place.

    ``Module.to(memory_format=torch.channels_last)`` refuses a model with any 5-D tensor
    (the representation-flow layer's 1x1x1 3-D convolutions); those keep their layout here.
    Parameters stay the same objects, so an optimiser built on them stays valid.
    """

    def convert(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dim() != 4:
            return tensor
        return tensor.contiguous(memory_format=torch.channels_last)

    return model._apply(convert)
