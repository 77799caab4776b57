"""Prefix sharing: the epochs that trials of a grid compute identically, run once.

Epoch ``e`` of a run is a function of the state after epoch ``e - 1`` and of what acts in epoch
``e``: the configuration apart from its optimisation settings (model, data, split, seed, crop,
initial weights, ...: the *static* part), and the settings of the epoch's stage: optimiser,
learning rate, weight decay and the learning-rate decays applied so far (``milestones`` crossed,
or one per epoch for the two-stream StepLR) with their ``gamma``. Two trials whose static parts
are equal and whose per-epoch settings agree up to epoch ``b`` compute the same epochs ``1..b``:
exactly on the CPU, where the engine is deterministic; on a GPU each is a valid run of its own
configuration (non-deterministic kernels make no two runs bit-identical anyway). So ``gamma``
acts only from the first milestone, a milestone only once it is crossed, the number of epochs
only at the end, the stage-1 settings of ``stage: both`` only in stage 1.

:func:`plan_sharing` puts the trials' per-epoch settings in a prefix tree: each node is an epoch
computed once, by the first trial (in search order) that reaches it. Every other trial
*branches*: it continues from the state that trial saved at the last epoch they share
(:class:`Branch`), with its own configuration. A trial's parent always computes the branch epoch
itself (it never inherited it), so one saved state per branch epoch is enough.

This module imports neither ray nor torch (``egotune spaces show`` prints the plan). The search
runs the plan with :mod:`tuner.tune.sharing`.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner.training.config import RUNTIME_KEYS, SCHEDULE_KEYS, TrainConfig
from tuner.training.recipes import recipe_for

__all__ = [
    "Branch",
    "SharingPlan",
    "epoch_settings",
    "plan_sharing",
    "recorded_savings",
    "static_settings",
]


@dataclass(frozen=True)
class Branch:
    """Where a trial starts: from ``parent``'s state after ``epoch``."""

    parent: int
    """Index (in search order) of the trial whose saved state this one continues."""
    epoch: int
    """Last epoch the two share: the branch's first own epoch is ``epoch + 1``."""


@dataclass(frozen=True)
class SharingPlan:
    """The trials of a search, how long each runs and where each one branches."""

    epochs: tuple[int, ...]
    """Planned epochs of each trial."""
    branches: tuple[Branch | None, ...]
    """Per trial: the branch it starts from, or ``None`` for a trial that starts at epoch 1."""
    _saves: dict[int, tuple[int, ...]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        saves: dict[int, set[int]] = {}
        for branch in self.branches:
            if branch is not None:
                saves.setdefault(branch.parent, set()).add(branch.epoch)
        self._saves.update({i: tuple(sorted(epochs)) for i, epochs in saves.items()})

    @property
    def trial_epochs(self) -> int:
        """Epochs the trials run without sharing."""
        return sum(self.epochs)

    @property
    def shared_trial_epochs(self) -> int:
        """Epochs computed with sharing: every trial's own epochs after its branch."""
        return sum(
            n - (b.epoch if b is not None else 0)
            for n, b in zip(self.epochs, self.branches, strict=True)
        )

    @property
    def shares(self) -> bool:
        """Whether any trial branches from another."""
        return any(branch is not None for branch in self.branches)

    def save_at(self, trial: int) -> tuple[int, ...]:
        """Epochs after which ``trial`` saves the state that other trials branch from."""
        return self._saves.get(trial, ())

    def sources(self, trial: int) -> list[tuple[int, int]]:
        """``(trial, epoch)`` states ``trial`` can start from, best first: its branch, then each
        ancestor's branch (shorter prefixes, for when a parent stopped before the branch
        epoch)."""
        chain = []
        branch = self.branches[trial]
        while branch is not None:
            chain.append((branch.parent, branch.epoch))
            branch = self.branches[branch.parent]
        return chain

    def summary(self) -> str:
        """One line: trial-epochs without and with sharing."""
        total, shared = self.trial_epochs, self.shared_trial_epochs
        saved = 100.0 * (total - shared) / total if total else 0.0
        return (
            f"{len(self.epochs)} trials: {total:,} trial-epochs without prefix sharing, "
            f"{shared:,} with it ({saved:.0f}% fewer)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "trials": len(self.epochs),
            "trial_epochs": self.trial_epochs,
            "shared_trial_epochs": self.shared_trial_epochs,
            "branches": [
                None if b is None else {"parent": b.parent, "epoch": b.epoch} for b in self.branches
            ],
        }


def static_settings(config: TrainConfig) -> str:
    """What acts in every epoch, as canonical text: the configuration without its runtime keys
    and without the optimisation settings of its stages (those act epoch by epoch)."""
    values = config.to_dict()
    for key in (*RUNTIME_KEYS, *SCHEDULE_KEYS, "stage1"):
        values.pop(key, None)
    return json.dumps(values, sort_keys=True)


def epoch_settings(config: TrainConfig) -> list[tuple[Any, ...]]:
    """Per epoch of the run (global order): the stage and the optimisation settings in effect.

    The learning rate of epoch ``k`` of a stage is its base rate times ``gamma`` to the number
    of decays applied before it: milestones ``m < k`` (MultiStepLR, stepped after each epoch),
    or ``k - 1`` for the models that decay every epoch (StepLR(1, gamma)).
    """
    per_epoch = recipe_for(config.model).per_epoch_decay
    settings = []
    for stage in config.stages:
        stage_settings = config.stage_settings(stage)
        milestones = sorted(stage_settings.milestones or ())
        for k in range(1, (stage_settings.epochs or 0) + 1):
            decays = k - 1 if per_epoch else sum(1 for m in milestones if m < k)
            settings.append(
                (
                    stage,
                    stage_settings.optimizer,
                    stage_settings.lr,
                    stage_settings.weight_decay,
                    decays,
                    stage_settings.gamma if decays else None,
                )
            )
    return settings


@dataclass
class _Node:
    owner: int
    """The first trial (in search order) that computes this epoch."""
    children: dict[Hashable, _Node] = field(default_factory=dict)


def plan_sharing(
    configs: Sequence[TrainConfig],
    groups: Sequence[Hashable] | None = None,
    lengths: Sequence[int] | None = None,
) -> SharingPlan:
    """The sharing plan of ``configs`` (in search order).

    ``groups`` (one per config) adds what the configuration does not show but a trial depends
    on; trials of different groups never share. ``lengths`` (one per config) cuts trials short,
    as a scheduler stopped them in a finished search.
    """
    roots: dict[Hashable, _Node] = {}
    epochs: list[int] = []
    branches: list[Branch | None] = []
    for i, config in enumerate(configs):
        steps = epoch_settings(config)
        if lengths is not None:
            steps = steps[: lengths[i]]
        group = (groups[i] if groups is not None else None, static_settings(config))
        node = roots.setdefault(group, _Node(owner=i))
        depth = 0
        for step in steps:
            child = node.children.get(step)
            if child is None:
                break
            node, depth = child, depth + 1
        branches.append(Branch(parent=node.owner, epoch=depth) if depth else None)
        for step in steps[depth:]:
            node = node.children.setdefault(step, _Node(owner=i))
        epochs.append(len(steps))
    return SharingPlan(epochs=tuple(epochs), branches=tuple(branches))


def recorded_savings(trials: Any, epochs: Any, configs: Sequence[TrainConfig]) -> dict[str, Any]:
    """What prefix sharing saves (or saved) on a finished search.

    ``trials`` and ``epochs`` are the experiment's tables (pandas), ``configs`` the trials'
    configurations in the order of ``trials``. Each trial counts the epochs it recorded (a
    scheduler may have stopped it); the epochs it would have taken from another trial are
    priced at their recorded ``seconds``.
    """
    ids = [str(t) for t in trials["trial_id"]]
    rows = epochs[epochs["trial_id"].isin(ids)]
    counts = rows.groupby("trial_id")["epoch"].max().reindex(ids).fillna(0).astype(int)
    plan = plan_sharing(configs, lengths=list(counts))
    seconds = rows.set_index(["trial_id", "epoch"])["seconds"].fillna(0.0)
    saved = 0.0
    for trial_id, branch in zip(ids, plan.branches, strict=True):
        if branch is not None:
            mine = seconds.loc[trial_id] if trial_id in seconds.index else seconds.iloc[:0]
            saved += float(mine[mine.index <= branch.epoch].sum())
    computed = rows["computed_by"] == rows["trial_id"] if "computed_by" in rows else None
    return {
        "trials": len(ids),
        "trial_epochs": len(rows),
        "trained_trial_epochs": int(computed.sum()) if computed is not None else len(rows),
        "with_sharing": plan.shared_trial_epochs,
        "recorded_seconds": float(seconds.sum()),
        "seconds_saved": saved,
    }
