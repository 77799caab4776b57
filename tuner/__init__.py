"""egotune's tuning package.

- :mod:`tuner.training`: one training run, without Ray (configuration, model recipes, engine,
  checkpoints);
- :mod:`tuner.tune`: the Ray Tune side (search, trainable, schedulers, prefix sharing), the only
  package that imports ray;
- :mod:`tuner.spaces`: search-space files; :mod:`tuner.results`: the Parquet tables and what is
  computed from them; :mod:`tuner.ui`: the web view; :mod:`tuner.cli`: the ``egotune`` command;
- :mod:`tuner.errors`, :mod:`tuner.hints`, :mod:`tuner.atomic` and :mod:`tuner.cache`: what every
  package shares.

``import tuner`` imports neither ray nor torch.
"""

from tuner import _moved
from tuner.errors import EgotuneError, UsageError
from tuner.training.config import (
    MODEL_NAMES,
    AuxWeights,
    StageSettings,
    TrainConfig,
    report_defaults,
)

_moved.install()

__all__ = [
    "MODEL_NAMES",
    "AuxWeights",
    "EgotuneError",
    "StageSettings",
    "TrainConfig",
    "UsageError",
    "report_defaults",
]
