"""Search-space files: loading, validation and expansion into trial configurations.

A search space is a YAML file (format: ``docs/search-spaces.md``) with a closed vocabulary:
``fixed`` values, ``grid`` axes, explicit ``points`` (rows of values that vary together), sampled
distributions (``uniform``, ``loguniform``, ``randint``, ``choice``), ``repeats`` (a ``seed`` axis
0..n-1), a ``scheduler`` block, ``resources`` per trial and named ``prerequisites``. Keys are the
field names of :class:`tuner.training.config.TrainConfig`, nested ones written ``alpha.ms`` or
``stage1.lr``.

Files are read with ``yaml.safe_load`` and nothing in them is ever evaluated. Every error is a
:class:`SpaceError` whose message starts with the file and the key, e.g.
``search_spaces/x.yaml: grid.lrr: unknown key``. A grid space expands to
``points x grid product x repeats`` trials, each checked with ``TrainConfig.from_dict``.

The package does not import ray or torch; ``tuner.tune.params`` turns a space into Ray Tune
objects. Modules: ``_keys`` (key kinds and value checks), ``_distributions``, ``_scheduler``
(:class:`Algorithm` and its settings), ``_prerequisites``, ``_space`` (:class:`SearchSpace`,
:func:`parse_space`), ``_validation`` (every trial as a ``TrainConfig``), ``_files``, ``_sharing``
(the prefix-sharing plan of a grid: the epochs its trials compute identically).
"""

from tuner.spaces._distributions import DISTRIBUTIONS, Distribution
from tuner.spaces._files import (
    BUNDLED_SPACES_DIR,
    SPACES_ENV,
    find_space,
    list_spaces,
    load_space,
    space_dirs,
)
from tuner.spaces._keys import SpaceError, key_kind, nest_config
from tuner.spaces._prerequisites import Prerequisite, PrerequisiteRun
from tuner.spaces._scheduler import (
    ALGORITHMS,
    ASHA_REDUCTION_FACTOR,
    METRICS,
    REPLAYABLE,
    Algorithm,
    SchedulerSettings,
    asha_grace_period,
)
from tuner.spaces._sharing import (
    Branch,
    SharingPlan,
    epoch_settings,
    plan_sharing,
    recorded_savings,
    static_settings,
)
from tuner.spaces._space import Resources, SearchSpace, parse_space

__all__ = [
    "ALGORITHMS",
    "ASHA_REDUCTION_FACTOR",
    "BUNDLED_SPACES_DIR",
    "DISTRIBUTIONS",
    "METRICS",
    "REPLAYABLE",
    "SPACES_ENV",
    "Algorithm",
    "Branch",
    "Distribution",
    "Prerequisite",
    "PrerequisiteRun",
    "Resources",
    "SchedulerSettings",
    "SearchSpace",
    "SharingPlan",
    "SpaceError",
    "asha_grace_period",
    "epoch_settings",
    "find_space",
    "key_kind",
    "list_spaces",
    "load_space",
    "nest_config",
    "parse_space",
    "plan_sharing",
    "recorded_savings",
    "space_dirs",
    "static_settings",
]
