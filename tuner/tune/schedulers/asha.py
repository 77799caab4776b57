"""ASHA (Ray Tune's ``ASHAScheduler``) on the reported ``epoch``: the ``asha`` and ``optuna+asha``
algorithms stop trials early at its rungs.

By default the rungs are Ray's: the grace period times powers of the reduction factor. A space's
``scheduler.rungs`` puts them at the epochs it names instead (where a fidelity schedule promotes
trials to longer clips or larger crops, :mod:`tuner.training.fidelity`); the decision at each is
Ray's: a trial goes on when its metric is in the top 1/eta of those recorded at that rung so far.
"""

from __future__ import annotations

from typing import Any

from tuner.errors import EgotuneError
from tuner.spaces import ASHA_REDUCTION_FACTOR, SearchSpace

__all__ = ["build_asha", "set_milestones"]


def build_asha(space: SearchSpace) -> Any:
    """``ASHAScheduler`` with the space's ``max_t``, ``grace_period`` and reduction factor."""
    from ray.tune.schedulers import ASHAScheduler

    settings = space.scheduler
    assert settings.max_t is not None and settings.grace_period is not None
    if settings.grace_period > settings.max_t:
        raise EgotuneError(
            f"{space.source}: scheduler.grace_period: {settings.grace_period} > max_t "
            f"{settings.max_t}"
        )
    scheduler = ASHAScheduler(
        time_attr="epoch",
        metric=settings.metric,
        mode=settings.mode,
        max_t=settings.max_t,
        grace_period=settings.grace_period,
        reduction_factor=settings.reduction_factor or ASHA_REDUCTION_FACTOR,
    )
    if settings.rungs is not None:
        set_milestones(scheduler, settings.rungs.milestones)
    return scheduler


def set_milestones(scheduler: Any, milestones: tuple[int, ...]) -> None:
    """Put the rungs of an ``ASHAScheduler`` (one bracket) at ``milestones``.

    Ray keeps a bracket's rungs as ``(milestone, recorded results)`` pairs, latest first, and
    decides at each with the same cutoff however they were spaced (Ray 2.x ``_Bracket``).
    """
    (bracket,) = scheduler._brackets
    bracket._rungs = [(float(m), {}) for m in sorted(milestones, reverse=True)]
