"""ASHA (Ray Tune's ``ASHAScheduler``) on the reported ``epoch``: the ``asha`` and ``optuna+asha``
algorithms stop trials early at its rungs."""

from __future__ import annotations

from typing import Any

from tuner.errors import EgotuneError
from tuner.spaces import ASHA_REDUCTION_FACTOR, SearchSpace

__all__ = ["build_asha"]


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
    return ASHAScheduler(
        time_attr="epoch",
        metric=settings.metric,
        mode=settings.mode,
        max_t=settings.max_t,
        grace_period=settings.grace_period,
        reduction_factor=settings.reduction_factor or ASHA_REDUCTION_FACTOR,
    )
