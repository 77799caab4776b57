"""Pure PyTorch modules of the report: Ego-RNN and its extensions on GTEA61.

Build a model by name with :func:`create_model` (names from :func:`list_models`); every model
returns a dict with ``"logits"`` and ``"features"`` (plus ``"ms"`` for the motion-segmentation
models). :func:`stage_param_groups` and :func:`set_stage_mode` say what a training stage updates.
No ray, no data loading; the only file I/O is reading weights.

Every module of the package is imported here, so a new model module registers its model with no
line added below (docs/models.md, "Adding a model family").
"""

import importlib
import pkgutil

from models._registry import (
    create_model,
    list_models,
    model_defaults,
    register_model,
    unregister_model,
)
from models._weights import (
    Weights,
    WeightsUnavailableError,
    imagenet_cache_file,
    load_state_dict_file,
)
from models.backbone import BACKBONES, BackboneOutput, ResNetBackbone, tap_size
from models.cam_attention import CamAttention
from models.conv_lstm import ConvLSTMCell
from models.ego_rnn import EgoRnn
from models.ego_rnn_ms import DYNAMIC, STATIC, EgoRnnMs, EgoRnnMsSd, static_clip
from models.ego_rnn_repflow import EgoRnnRepFlow
from models.flow_resnet import FlowResNet, average_segment_logits, imagenet_to_flow_state
from models.motion_segmentation import MS_TASKS, MotionSegmentationHead, ms_loss
from models.representation_flow import RepresentationFlow, TVL1Flow
from models.stages import StagePlan, set_stage_mode, stage_param_groups
from models.two_stream import BranchState, TwoStream

__all__ = [
    "BACKBONES",
    "DYNAMIC",
    "MS_TASKS",
    "STATIC",
    "BackboneOutput",
    "BranchState",
    "CamAttention",
    "ConvLSTMCell",
    "EgoRnn",
    "EgoRnnMs",
    "EgoRnnMsSd",
    "EgoRnnRepFlow",
    "FlowResNet",
    "MotionSegmentationHead",
    "RepresentationFlow",
    "ResNetBackbone",
    "StagePlan",
    "TVL1Flow",
    "TwoStream",
    "Weights",
    "WeightsUnavailableError",
    "average_segment_logits",
    "create_model",
    "imagenet_cache_file",
    "imagenet_to_flow_state",
    "list_models",
    "load_state_dict_file",
    "model_defaults",
    "ms_loss",
    "register_model",
    "set_stage_mode",
    "stage_param_groups",
    "static_clip",
    "tap_size",
    "unregister_model",
]

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
