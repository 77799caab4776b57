"""The files a search with prefix sharing leaves in each trial's checkpoint folder: the trial's
part of the plan (:class:`TrialSharing`, written by the searcher before the trial starts and read
by the trainable) and the mark of a trial that ended."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tuner.atomic import write_json_atomic

__all__ = ["ENDED_FILE", "SHARING_FILE", "TrialSharing"]

SHARING_FILE = "sharing.json"
"""``<experiment>/checkpoints/<trial_id>/sharing.json``: the trial's part of the plan, written by
the searcher before the trial starts."""
ENDED_FILE = "ended.json"
"""Written by the searcher when a trial ended (completed, stopped or failed for good): a branch
waiting for a state the trial never saved starts from a shorter prefix."""


@dataclass(frozen=True)
class TrialSharing:
    """A trial's part of a sharing plan, with the other trials named by their Tune trial ids."""

    save_at: tuple[int, ...] = ()
    """Epochs after which the trial saves a branch state."""
    sources: tuple[tuple[str, int], ...] = ()
    """``(trial_id, epoch)`` branch states the trial may start from, best first."""
    plan_index: int | None = None
    """The trial's position in the plan (search order)."""

    def write(self, folder: str | os.PathLike[str]) -> None:
        path = Path(folder) / SHARING_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "plan_index": self.plan_index,
            "save_at": list(self.save_at),
            "sources": [list(source) for source in self.sources],
        }
        write_json_atomic(path, document)

    @classmethod
    def read(cls, folder: str | os.PathLike[str]) -> TrialSharing | None:
        """The trial's sharing file, or ``None`` for a trial of a search without sharing."""
        path = Path(folder) / SHARING_FILE
        if not path.is_file():
            return None
        document = json.loads(path.read_text())
        return cls(
            save_at=tuple(int(e) for e in document.get("save_at", ())),
            sources=tuple((str(t), int(e)) for t, e in document.get("sources", ())),
            plan_index=document.get("plan_index"),
        )
