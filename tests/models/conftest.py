"""Shared builders for the model tests: tiny clips and small (ResNet-18, 64 px) models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from models import create_model, model_defaults

B, T, SIZE, CLASSES, MEM = 2, 3, 64, 5, 32
SMALL = {"backbone": "resnet18", "input_size": SIZE, "num_classes": CLASSES, "mem_size": MEM}
"""Keyword arguments of a small model: each constructor takes the ones it accepts."""


def build_small(name: str, **extra: Any) -> nn.Module:
    """``create_model(name)`` with the ``SMALL`` settings it accepts, plus ``extra``."""
    accepted = model_defaults(name)
    kwargs = {k: v for k, v in {**SMALL, **extra}.items() if k in accepted}
    torch.manual_seed(0)
    return create_model(name, **kwargs)


def run_model(name: str, model: nn.Module, rgb: Tensor, flow: Tensor) -> dict[str, Tensor]:
    """Feed ``model`` the inputs its kind takes."""
    if name == "flow_resnet34":
        return model(flow)  # type: ignore[no-any-return]
    if name == "two_stream":
        return model(rgb, flow)  # type: ignore[no-any-return]
    return model(rgb)  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run each model test on one intra-op thread: on a small shared CPU, two threads that wait
    for each other are many times slower than one for these tiny tensors."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rgb() -> Tensor:
    """A normalised-looking clip (B, T, 3, SIZE, SIZE)."""
    return torch.randn(B, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def flow() -> Tensor:
    """A flow stack (B, 10, SIZE, SIZE)."""
    return torch.randn(B, 10, SIZE, SIZE, generator=torch.Generator().manual_seed(2))


@pytest.fixture
def small() -> Callable[..., nn.Module]:
    return build_small
