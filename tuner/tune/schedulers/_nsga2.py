"""Optuna's NSGA-II sampler in a form Ray Tune can save with its searcher (imports optuna)."""

from __future__ import annotations

import threading
from typing import Any

from optuna.samplers import NSGAIISampler

__all__ = ["PicklableNSGAII"]


class PicklableNSGAII(NSGAIISampler):
    """``NSGAIISampler`` without its ``threading.Lock`` in the pickled state (Optuna 4-5 keep
    one on the sampler; Ray Tune pickles the searcher with its sampler at every experiment
    snapshot); the lock is made anew when the sampler is unpickled."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()
