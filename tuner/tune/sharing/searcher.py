"""The Ray Tune searcher that runs a grid with prefix sharing (:func:`tuner.spaces.plan_sharing`).

It hands Tune the grid's trials in search order, each when it can start: a trial that starts at
epoch 1 at once, a branch once the trial it continues has saved the branch state (or has ended
without reaching it: the branch then starts from the longest shorter prefix on disk, or from
epoch 1). Before a trial is handed out, its part of the plan goes to
``<store>/<trial_id>/sharing.json``: the epochs after which it saves branch states and the states
it may start from, by trial id. Waiting trials hold no resources: Tune asks again at every step.

State that must survive a driver restart is on disk (the sharing files, the branch states, an
``ended.json`` per ended trial) or saved with Tune's experiment state (which plan index became
which trial id, through :meth:`save` / :meth:`restore`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from tuner.atomic import write_json_atomic
from tuner.spaces import SharingPlan
from tuner.training.checkpoints.writer import CheckpointFolder
from tuner.tune.sharing.trial import ENDED_FILE, SHARING_FILE, TrialSharing

__all__ = ["PrefixSharingSearcher"]


class PrefixSharingSearcher(Searcher):
    """Suggests ``configs`` in order, each branch once its state can be had."""

    def __init__(
        self,
        configs: Sequence[Mapping[str, Any]],
        plan: SharingPlan,
        store: str | Path,
        metric: str | None = None,
        mode: str | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        if len(configs) != len(plan.epochs):
            raise ValueError("one plan entry per configuration")
        self._configs = [dict(config) for config in configs]
        self._plan = plan
        self._store = store
        self._trial_ids: list[str | None] = [None] * len(self._configs)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if all(assigned is not None for assigned in self._trial_ids):
            return Searcher.FINISHED  # type: ignore[return-value]  # Tune's own sentinel
        for index, assigned in enumerate(self._trial_ids):
            if assigned is None and self._ready(index):
                self._assign(index, trial_id)
                return dict(self._configs[index])
        return None  # every remaining trial waits for a branch state

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        folder = CheckpointFolder.of(self._store, trial_id)
        folder.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder.path(ENDED_FILE), {"error": bool(error)})
        folder.publish(ENDED_FILE)

    def save(self, checkpoint_path: str) -> None:
        write_json_atomic(checkpoint_path, {"trial_ids": self._trial_ids})

    def restore(self, checkpoint_path: str) -> None:
        self._trial_ids = list(json.loads(Path(checkpoint_path).read_text())["trial_ids"])

    # -- internals -----------------------------------------------------------------------------

    def _ready(self, index: int) -> bool:
        branch = self._plan.branches[index]
        if branch is None:
            return True
        parent = self._trial_ids[branch.parent]
        if parent is None:
            return False
        folder = CheckpointFolder.of(self._store, parent)
        return folder.has(folder.branch_path(branch.epoch).name) or folder.has(ENDED_FILE)

    def _assign(self, index: int, trial_id: str) -> None:
        self._trial_ids[index] = trial_id
        sources = []
        for parent, epoch in self._plan.sources(index):
            parent_id = self._trial_ids[parent]
            if parent_id is not None:
                sources.append((parent_id, epoch))
        folder = CheckpointFolder.of(self._store, trial_id)
        TrialSharing(
            save_at=self._plan.save_at(index), sources=tuple(sources), plan_index=index
        ).write(folder.folder)
        folder.publish(SHARING_FILE)
