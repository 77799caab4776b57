"""Build the model a :class:`~tuner.config.TrainConfig` describes, with its starting weights.

Starting points: ImageNet / local / no backbone weights (``weights``); for a stage-2 run, a
stage-1 checkpoint (``init_checkpoint``); for the two-stream model, a trained Ego-RNN and a trained
flow network (``rgb_checkpoint``, ``flow_checkpoint``), each from its own checkpoint file.
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import Tensor, nn

from models import create_model
from tuner.checkpoint import CheckpointError, load_checkpoint
from tuner.config import TrainConfig

__all__ = ["build_model", "load_model_state"]


def _weights(cfg: TrainConfig) -> str | None:
    return None if cfg.weights.lower() == "none" else cfg.weights


def _kwargs(cfg: TrainConfig, model: str, num_classes: int) -> dict[str, Any]:
    common: dict[str, Any] = {
        "num_classes": num_classes,
        "backbone": cfg.backbone,
        "weights": _weights(cfg),
        "input_size": cfg.crop_size,
    }
    if model == "flow_resnet34":
        return {**common, "flow_stack": cfg.flow_stack}
    rgb = {**common, "mem_size": cfg.mem_size, "cam": cfg.cam}
    if model in ("ego_rnn_ms", "ego_rnn_ms_sd"):
        rgb.update(ms_layer=cfg.ms_layer, ms_task=cfg.ms_task, ms_dropout=cfg.ms_dropout)
    if model == "ego_rnn_ms_sd":
        rgb["sd_train_conv5"] = cfg.sd_train_conv5
    if model == "ego_rnn_repflow":
        rgb["repflow_iters"] = cfg.repflow_iters
    return rgb


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The model of ``cfg`` with ``num_classes`` outputs and its configured starting weights."""
    if cfg.model == "two_stream":
        return _build_two_stream(cfg, num_classes)
    model = create_model(cfg.model, **_kwargs(cfg, cfg.model, num_classes))
    if cfg.init_checkpoint is not None and cfg.stage == "2":
        load_model_state(model, cfg.init_checkpoint, strict=False)
    return model


def _build_two_stream(cfg: TrainConfig, num_classes: int) -> nn.Module:
    rgb = create_model("ego_rnn", **_kwargs(cfg, "ego_rnn", num_classes))
    flow = create_model("flow_resnet34", **_kwargs(cfg, "flow_resnet34", num_classes))
    for branch, path, key in (
        (rgb, cfg.rgb_checkpoint, "rgb"),
        (flow, cfg.flow_checkpoint, "flow"),
    ):
        if path is None:
            warnings.warn(
                f"{key}_checkpoint: not set; the two-stream {key} branch starts untrained "
                "(the report starts from a trained Ego-RNN stage 2 and a trained flow network)",
                stacklevel=2,
            )
        else:
            load_model_state(branch, path, strict=True)
    return create_model("two_stream", rgb_model=rgb, flow_model=flow, num_classes=num_classes)


def load_model_state(model: nn.Module, path: str, *, strict: bool) -> None:
    """Load the ``model`` weights stored in an egotune checkpoint file into ``model``.

    With ``strict=False`` a stage-1 Ego-RNN may initialise a model with extra heads (MS, SD); keys
    the checkpoint has but the model lacks, or tensors of another shape, are still errors.
    """
    state = load_checkpoint(path)
    weights: dict[str, Tensor] | None = state.get("model")
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path}: checkpoint holds no model weights")
    own = model.state_dict()
    unexpected = sorted(set(weights) - set(own))
    mismatched = sorted(k for k in weights if k in own and weights[k].shape != own[k].shape)
    if unexpected or mismatched:
        shown = ", ".join((unexpected + mismatched)[:5])
        raise CheckpointError(
            f"{path}: weights do not fit model {type(model).__name__} ({shown}); "
            "check that the checkpoint comes from the matching model, backbone and class count"
        )
    missing = sorted(set(own) - set(weights))
    if missing and strict:
        raise CheckpointError(f"{path}: checkpoint lacks weights for {', '.join(missing[:5])}")
    model.load_state_dict(weights, strict=False)
