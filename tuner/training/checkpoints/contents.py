"""What a training checkpoint holds, and what it may leave out.

A stage trains a subset of the model (:func:`changing_keys`); everything else (the frozen
backbone, its BatchNorm statistics) is a function of the configuration: the weights source
(ImageNet file, local file, or random initialisation from the seed with BatchNorm calibration),
the stage-1 ``init_checkpoint`` and, for the two-stream model, its branch checkpoints. A resume
checkpoint therefore stores the entries the current stage changes and records the identity of
those sources (:func:`frozen_source`, SHA-256 of each file), so that resuming against another
source is refused instead of silently mixing weights (:func:`check_frozen_source`).

Every stage trains a superset of the entries the stages before it trained (Ego-RNN's stage 1:
ConvLSTM and classifier; stage 2: those plus layer4, the FC and the heads), so the entries of the
current stage are all that differs from a freshly built model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from tuner.training.checkpoints.files import CheckpointError

if TYPE_CHECKING:
    from tuner.training.config import TrainConfig

__all__ = [
    "best_weights_checkpoint",
    "changing_keys",
    "check_frozen_source",
    "frozen_source",
    "host_copy",
    "merge_best_weights",
    "tensor_bytes",
]

_SOURCE_FILES = ("weights", "init_checkpoint", "rgb_checkpoint", "flow_checkpoint")


def changing_keys(model: nn.Module) -> list[str]:
    """State-dict keys that training in the current stage mode can change: the parameters that
    require gradients and the buffers (BatchNorm statistics) of modules in train mode."""
    keys = [name for name, p in model.named_parameters() if p.requires_grad]
    for prefix, module in model.named_modules():
        if module.training:
            buffers = module.named_buffers(recurse=False)
            keys += [f"{prefix}.{n}" if prefix else n for n, _ in buffers]
    return keys


def merge_best_weights(
    model_state: Mapping[str, Tensor], best_model: Mapping[str, Tensor] | None
) -> dict[str, Tensor]:
    """Full weights of the best epoch: ``model_state`` (a full model state taken during the same
    stage, so its frozen entries equal the best epoch's) with the entries the stage trains taken
    from ``best_model``. Without a best yet, ``model_state`` itself."""
    return {**model_state, **(best_model or {})}


def best_weights_checkpoint(
    state: Mapping[str, Any], full_model: Mapping[str, Tensor]
) -> dict[str, Any]:
    """The weights-only checkpoint of the current stage's best epoch of a trainer ``state``
    (:meth:`tuner.training.engine.Trainer.state_dict`), complete with the frozen entries of
    ``full_model``: what stage chaining and prerequisites hand on (``init_checkpoint`` reads
    ``model``)."""
    return {
        "config": state["config"],
        "classes": state["classes"],
        "stage": int(state["stage"]),
        "epoch": int(state["best"]["epoch"]),
        "val_acc": float(state["best"]["val_acc"]),
        "model": merge_best_weights(full_model, state.get("best_model")),
    }


def frozen_source(cfg: TrainConfig) -> dict[str, str | None]:
    """Identity of everything a freshly built model of ``cfg`` is initialised from.

    ``weights`` is ``none`` (random initialisation from the seed, BatchNorm calibrated from the
    data), ``imagenet`` or a path; each file used (the ImageNet file of the torch hub cache, a
    local weights file, the init and branch checkpoints) is identified by its SHA-256.
    """
    weights = cfg.weights
    files: dict[str, str | None] = {
        "weights": None if weights.lower() in ("none", "imagenet") else weights,
        "init_checkpoint": cfg.init_checkpoint if cfg.stage == "2" else None,
        "rgb_checkpoint": cfg.rgb_checkpoint if cfg.model == "two_stream" else None,
        "flow_checkpoint": cfg.flow_checkpoint if cfg.model == "two_stream" else None,
    }
    if weights.lower() == "imagenet":
        from models import imagenet_cache_file

        files["weights"] = str(imagenet_cache_file(cfg.backbone))
    identity: dict[str, str | None] = {"weights_source": weights.lower()}
    for key in _SOURCE_FILES:
        path = files[key]
        identity[key] = _file_digest(Path(path)) if path else None
    return identity


def check_frozen_source(saved: Mapping[str, Any] | None, current: Mapping[str, Any]) -> None:
    """Refuse a checkpoint whose frozen entries came from other files than this run's."""
    if not saved:
        return  # written with the full model, frozen entries included
    differing = sorted(k for k in current if saved.get(k) != current.get(k))
    if differing:
        raise CheckpointError(
            f"checkpoint was written against other frozen weights ({', '.join(differing)} "
            "differ: a weights or checkpoint file changed since); resume with the same files "
            "or start a new run in another folder"
        )


def host_copy(value: Any) -> Any:
    """``value`` (nested dicts, lists and tuples) with every tensor copied to host memory."""
    if isinstance(value, Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, Mapping):
        return {k: host_copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(host_copy(v) for v in value)
    return value


def tensor_bytes(value: Any) -> int:
    """Bytes of the tensors in ``value`` (nested dicts, lists and tuples)."""
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, Mapping):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(tensor_bytes(v) for v in value)
    return 0


def _file_digest(path: Path) -> str | None:
    if not path.is_file():
        return None
    stat = path.stat()
    return _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@cache
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file, computed once per file version in this process."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
