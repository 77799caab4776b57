"""GTEA61 on disk -> tensors. No model code and no ray.

* Layouts: the course archive (``processed_frames2/``, ``flow_x_processed/``,
  ``flow_y_processed/``, PNG, motion maps) and the original Ego-RNN release (``frames/``,
  ``flow_x/``, ``flow_y/``, JPEG), at ``ROOT`` or ``ROOT/GTEA61``, detected automatically.
* :func:`discover` indexes a dataset for loading; :func:`check_dataset` lists every problem and
  :func:`fix_dataset` repairs the repairable ones (``egotune data check``); :func:`verify_frames`
  decodes every frame of an index (a search's pre-flight check).
* :class:`ClipDataset` turns videos into RGB clips, flow stacks, motion-map targets and static
  clips with the Ego-RNN sampling and transforms, reproducibly per ``(seed, epoch, index)``;
  :class:`EpochBatches` feeds it ``(epoch, index)`` keys for loaders that outlive an epoch.
* :class:`FrameStore` decodes every frame once per node into memory-mapped uint8 files that
  ``ClipDataset`` reads instead of PNGs; :class:`BatchFinisher` resizes and normalises whole
  batches on the GPU.
* :func:`synthesize` writes a small synthetic GTEA61 (``egotune data synth``).
"""

from data_pipeline._batch_finisher import BatchFinisher
from data_pipeline._batches import EpochBatches
from data_pipeline._check import CheckReport, check_dataset, discover, verify_frames
from data_pipeline._classes import GTEA61_CLASSES, choose_classes
from data_pipeline._dataset import MODALITIES, ClipDataset
from data_pipeline._decode import FrameDecoder, PILFrameDecoder
from data_pipeline._fix import fix_dataset
from data_pipeline._frame_store import FrameStore, FrameStoreError, FrameStoreWarning
from data_pipeline._index import (
    DatasetError,
    DatasetIndex,
    DatasetWarning,
    Video,
    dataset_fingerprint,
    frame_stamps,
    leave_one_user_out,
    split_by_user,
)
from data_pipeline._layout import COURSE, ORIGINAL, Layout, detect_layout
from data_pipeline._sampling import flow_frame_numbers, flow_starts, rgb_frame_numbers
from data_pipeline._scan import QUARANTINE, FatalProblem, Problem
from data_pipeline._transforms import (
    CORNERS,
    FLOW_MEAN,
    FLOW_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    SCALES,
    ClipTransform,
    CropParams,
    corner_box,
    default_scale_size,
    downsample_mmaps,
    normalize_flow,
    normalize_rgb,
)
from data_pipeline.synth import SynthSummary, synthesize

__all__ = [
    "CORNERS",
    "COURSE",
    "FLOW_MEAN",
    "FLOW_STD",
    "GTEA61_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODALITIES",
    "ORIGINAL",
    "QUARANTINE",
    "SCALES",
    "BatchFinisher",
    "CheckReport",
    "ClipDataset",
    "ClipTransform",
    "CropParams",
    "DatasetError",
    "DatasetIndex",
    "DatasetWarning",
    "EpochBatches",
    "FatalProblem",
    "FrameDecoder",
    "FrameStore",
    "FrameStoreError",
    "FrameStoreWarning",
    "Layout",
    "PILFrameDecoder",
    "Problem",
    "SynthSummary",
    "Video",
    "check_dataset",
    "choose_classes",
    "corner_box",
    "dataset_fingerprint",
    "default_scale_size",
    "detect_layout",
    "discover",
    "downsample_mmaps",
    "fix_dataset",
    "flow_frame_numbers",
    "flow_starts",
    "frame_stamps",
    "leave_one_user_out",
    "normalize_flow",
    "normalize_rgb",
    "rgb_frame_numbers",
    "split_by_user",
    "synthesize",
    "verify_frames",
]
