"""Checks the commands run before any work: ImageNet weights that a run will ask for, the size
of the checkpoints it will write, and the resources each trial asks against what the machine or
the cluster has.

A run whose backbone starts from ImageNet loads torchvision's file from the torch hub cache,
downloading it when online. Without it, ``egotune train`` would stop inside the model's
constructor and a local search would fail every trial inside Ray; checked here first, it is one
line naming the file to provide.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner.errors import UsageError
from tuner.training.config import TrainConfig

__all__ = [
    "ResourceRequest",
    "check_cluster_resources",
    "check_local_resources",
    "local_gpu_count",
    "require_imagenet_weights",
    "resource_requests",
    "state_bytes",
]

_IMAGENET = ("imagenet", "imagenet1k_v1")


def require_imagenet_weights(configs: Iterable[TrainConfig]) -> None:
    """Make sure the ImageNet weights of every backbone ``configs`` start from are in the cache.

    Downloads what is missing when online; raises ``models.WeightsUnavailableError`` otherwise.
    """
    arches = {config.backbone for config in configs if config.weights.lower() in _IMAGENET}
    if not arches:
        return
    from models import ResNetBackbone, imagenet_cache_file

    for arch in sorted(arches):
        cache = imagenet_cache_file(arch)
        if cache.is_file():
            continue
        # torch.hub announces the download on stdout; when it fails, the error says it all.
        with contextlib.redirect_stdout(io.StringIO()):
            ResNetBackbone(arch, "imagenet")  # loads them, as a trial would
        print(f"egotune: downloaded the ImageNet weights of {arch} to {cache}", file=sys.stderr)


def state_bytes(configs: Iterable[TrainConfig], num_classes: int) -> int:
    """An upper bound of the largest resume state the trials of ``configs`` write, in bytes.

    A state holds the model's parameters and buffers and, at most, two Adam moments per
    parameter. Each distinct model is built on PyTorch's ``meta`` device (shapes only, no memory,
    no weights loaded), so the bound costs milliseconds.
    """
    import torch

    from tuner.training.recipes import build_model, recipe_for

    sizes: dict[str, int] = {}
    for config in configs:
        cfg = config.replace(
            weights="none", init_checkpoint=None, rgb_checkpoint=None, flow_checkpoint=None
        )
        # A grid varies training settings far more often than the model: build each model once.
        kwargs = recipe_for(cfg.model).model_kwargs(cfg, num_classes)
        key = repr((cfg.model, cfg.backbone, cfg.mem_size, sorted(kwargs.items())))
        if key in sizes:
            continue
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "two-stream branch starts untrained"
            model = build_model(cfg, num_classes)
        parameters = sum(p.numel() * p.element_size() for p in model.parameters())
        buffers = sum(b.numel() * b.element_size() for b in model.buffers())
        sizes[key] = 3 * parameters + buffers
    return max(sizes.values(), default=0)


# -- per-trial resources ------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceRequest:
    """One resource a trial reserves, and where its value came from."""

    key: str
    """``cpus`` or ``gpus``, as in the space's ``resources``."""
    value: float
    origin: str
    """As the user wrote it: ``--gpus-per-trial 0.5`` or ``resources.gpus: 0.5 in FILE``."""

    @property
    def ray_name(self) -> str:
        return self.key[:-1].upper()

    @property
    def flag(self) -> str:
        return f"--{self.key}-per-trial"


def resource_requests(space: Any, flags: Mapping[str, float]) -> list[ResourceRequest]:
    """The CPUs and GPUs each trial of ``space`` asks, named by origin: a flag of ``flags``
    (``{"gpus": 0.5}`` for ``--gpus-per-trial 0.5``), the space file's ``resources`` key, or the
    default."""
    declared = space.document.get("resources") or {}
    requests = []
    for key in ("cpus", "gpus"):
        value = float(getattr(space.resources, key))
        if key in flags:
            origin = f"--{key}-per-trial {value:g}"
        elif key in declared:
            origin = f"resources.{key}: {value:g} in {space.source}"
        else:
            origin = f"the default {value:g} {key[:-1].upper()}"
        requests.append(ResourceRequest(key, value, origin))
    return requests


def local_gpu_count() -> int | None:
    """GPUs a Ray started on this machine would see, when that is certain without starting it
    (``None``: unknown). Only an empty ``CUDA_VISIBLE_DEVICES``, or a Linux machine without
    NVIDIA's or AMD's driver, is certain to have none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "NoDevFiles"):
        return 0
    if not sys.platform.startswith("linux"):
        return None
    nvidia = Path("/proc/driver/nvidia/gpus")
    if nvidia.is_dir() or Path("/dev/kfd").exists():
        return len(list(nvidia.iterdir())) if nvidia.is_dir() else None
    return 0


def check_local_resources(requests: Sequence[ResourceRequest], cpus: int, gpus: int | None) -> None:
    """Before a local Ray starts: refuse what this machine obviously cannot give a trial (``cpus``
    CPUs, ``gpus`` GPUs or ``None`` when unknown), every problem in one message."""
    have = {"CPU": float(cpus), "GPU": float("inf") if gpus is None else float(gpus)}
    short = [r for r in requests if r.value > have[r.ray_name]]  # unknown GPUs: never short
    if not short:
        return
    gpu_text = "" if gpus is None else f", {gpus} GPUs" if gpus else ", no GPU"
    machine = f"{cpus} CPUs{gpu_text}"
    raise UsageError(
        f"per-trial resources this machine does not have ({machine}; without --address the "
        f"search runs here): {_problems(short, {'CPU': cpus, 'GPU': gpus or 0})}; or run it on "
        "a cluster with --address"
    )


def check_cluster_resources(
    requests: Sequence[ResourceRequest], shapes: Sequence[Mapping[str, float]]
) -> None:
    """Refuse requests that no node of the cluster can ever give a trial, every problem in one
    message. ``shapes``: each node's resources, and each node type an autoscaler may still add."""
    asked = {r.ray_name: r.value for r in requests}
    if any(all(shape.get(k, 0) >= v for k, v in asked.items()) for shape in shapes):
        return
    most = {k: max((s.get(k, 0.0) for s in shapes), default=0.0) for k in ("CPU", "GPU")}
    largest = f"largest node: {most['CPU']:g} CPUs, {most['GPU']:g} GPUs"
    short = [r for r in requests if r.value > most[r.ray_name]]
    if short:
        raise UsageError(
            f"per-trial resources no node of the cluster has ({largest}): {_problems(short, most)}"
        )
    together = " with ".join(r.origin for r in requests if r.value > 0)
    raise UsageError(
        f"per-trial resources no single node of the cluster has together ({largest}): "
        f"{together}; lower one of them or add a node that has both"
    )


def _problems(short: Sequence[ResourceRequest], most: Mapping[str, float]) -> str:
    """Each request that does not fit, with the flag that overrides it."""
    parts = []
    for request in short:
        available = float(most[request.ray_name])
        value = "0 to train on CPUs" if request.key == "gpus" and not available else None
        value = value or f"{available:g} or less"
        given = request.origin.startswith(request.flag)
        fix = f"lower it: {value}" if given else f"override it with {request.flag} {value}"
        parts.append(f"{request.origin} ({fix})")
    return "; ".join(parts)
