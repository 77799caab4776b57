"""Training one run, without Ray: the configuration, the model recipes, the engine, checkpoints.

- :mod:`tuner.training.config`: :class:`TrainConfig`, every key of a run; :mod:`.checks` holds
  the checks of its core keys (a model family's options are checked by its recipe).
- :mod:`tuner.training.recipes`: one module per model family (its options, how it is built, how
  one batch becomes its loss, the report's settings).
- :mod:`tuner.training.engine`: :class:`Trainer`, the epochs of a run; with :mod:`.loading`
  (persistent loaders), :mod:`.device` (CUDA preparation, compile), :mod:`.optim`,
  :mod:`.records` (what an epoch reports), :mod:`.cam`, :mod:`.dataset_checks` and
  :mod:`.simulated_gpu`.
- :mod:`tuner.training.checkpoints`: the file format (:mod:`.files`), what a state holds
  (:mod:`.contents`), and when and how a run writes it (:mod:`.writer`).

Nothing here imports ray (:mod:`tuner.tune` is the only package that does). The configuration
and the recipes import torch only inside the functions that run a model.
"""
