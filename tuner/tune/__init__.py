"""The Ray Tune side of egotune, and the only package that imports ray.

- :mod:`tuner.tune.search`: :func:`run_search`, a space on a Ray cluster, new or resumed; it runs
  the space's :mod:`.prerequisites` first.
- :mod:`tuner.tune.trainable`: one trial, a :class:`~tuner.training.engine.Trainer` reporting
  each epoch to Tune.
- :mod:`tuner.tune.params`: a space's Ray param space and each trial's configuration.
- :mod:`tuner.tune.schedulers`: one module per algorithm (:mod:`.asha`, :mod:`.optuna`,
  :mod:`.pbt`) and the name-to-builder table.
- :mod:`tuner.tune.sharing`: prefix sharing, its :mod:`.plan` and the :mod:`.searcher` that runs it.
- :mod:`tuner.tune.callbacks` (the Parquet tables), :mod:`.console`, :mod:`.session` (connecting
  to Ray), :mod:`.claim` (one search per experiment), :mod:`.interrupt` (Ctrl-C),
  :mod:`.preflight` (checks before any work) and :mod:`.replay` (a finished experiment replayed
  under another scheduler).

Modules import ray inside the functions that need it where they can, so ``egotune spaces show``
and the tables' readers never load it.
"""
