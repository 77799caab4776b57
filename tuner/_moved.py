"""Where the modules of earlier versions went, for the experiments they saved.

Ray Tune pickles a search's trainable, callbacks, searcher and scheduler with the run
configuration (``tuner.pkl``, the searcher's state), by module and name. An experiment saved
before ``tuner.training`` and ``tuner.tune`` existed names ``tuner.callbacks``,
``tuner._prefix_searcher`` and so on; ``egotune search --resume`` unpickles those. The finder
installed by :mod:`tuner` answers each old name with a module whose attributes are looked up in
the new modules listed for it, in order. Nothing in egotune imports an old name.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import Any

__all__ = ["MOVED", "install"]

MOVED: dict[str, tuple[str, ...]] = {
    "tuner.config": ("tuner.training.config",),
    "tuner._config_checks": ("tuner.training.checks",),
    "tuner.engine": ("tuner.training.engine",),
    "tuner.checkpoint": ("tuner.training.checkpoints.files",),
    "tuner._checkpoints": (
        "tuner.training.checkpoints.writer",
        "tuner.training.checkpoints.policy",
    ),
    "tuner._state": ("tuner.training.checkpoints.contents",),
    "tuner.recipes": ("tuner.training.recipes",),
    "tuner.search": ("tuner.tune.search", "tuner.tune.prerequisites"),
    "tuner.trainable": ("tuner.tune.trainable",),
    "tuner.callbacks": ("tuner.tune.callbacks",),
    "tuner.replay": ("tuner.tune.replay",),
    "tuner._tune_mapping": ("tuner.tune.params", "tuner.tune.schedulers", "tuner.tune.console"),
    "tuner.population": ("tuner.tune.schedulers.pbt",),
    "tuner._population_schedulers": ("tuner.tune.schedulers.pbt",),
    "tuner.sharing": ("tuner.spaces", "tuner.tune.sharing.trial"),
    "tuner._prefix_searcher": ("tuner.tune.sharing.searcher",),
}
"""Old module -> the modules its names now live in."""


class _Moved(types.ModuleType):
    def __init__(self, name: str, targets: Sequence[str]) -> None:
        super().__init__(name, f"Moved: its names are in {', '.join(targets)}.")
        self._targets = tuple(targets)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        for target in self._targets:
            module = importlib.import_module(target)
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"{self.__name__}.{name} is in none of {', '.join(self._targets)}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _Moved(spec.name, MOVED[spec.name])

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def install() -> None:
    """Answer the old names (once per process)."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.append(_Finder())
