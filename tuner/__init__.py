"""egotune's tuning package: training engine, Ray Tune glue, search spaces, results and CLI.

It is the only package of the project that imports ray, and only in the modules that need it, so
``import tuner`` stays light.
"""

from tuner.config import MODEL_NAMES, AuxWeights, StageSettings, TrainConfig, report_defaults
from tuner.errors import EgotuneError, UsageError

__all__ = [
    "MODEL_NAMES",
    "AuxWeights",
    "EgotuneError",
    "StageSettings",
    "TrainConfig",
    "UsageError",
    "report_defaults",
]
