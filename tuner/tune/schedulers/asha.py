"""ASHA (Ray Tune's ``ASHAScheduler``) on the reported ``epoch``: the ``asha`` and ``optuna+asha``
algorithms stop trials early at its rungs.

By default the rungs are Ray's: the grace period times powers of the reduction factor. A space's
``scheduler.rungs`` puts them at the epochs it names instead (where a fidelity schedule promotes
trials to longer clips or larger crops, :mod:`tuner.training.fidelity`); the decision at each is
Ray's, a trial goes on when its metric is in the top 1/eta of those recorded at that rung so far,
taken on the rung's own epoch only (:func:`exact_bracket`).
"""

from __future__ import annotations

from typing import Any

from tuner.errors import EgotuneError
from tuner.spaces import ASHA_REDUCTION_FACTOR, SearchSpace

__all__ = ["build_asha", "exact_bracket", "set_milestones"]


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
    """Put the rungs of an ``ASHAScheduler`` (one bracket) at ``milestones``, deciding at each
    one exactly (:func:`exact_bracket`)."""
    (bracket,) = scheduler._brackets
    scheduler._brackets = [exact_bracket(bracket.rf, milestones)]


def exact_bracket(reduction_factor: float, milestones: tuple[int, ...]) -> Any:
    """An ASHA bracket with its rungs at ``milestones`` that judges a trial at a rung only on
    the result of that very epoch.

    Ray's bracket judges a trial on its first result at or after a milestone it has no record
    of. After a driver restart Ray keeps no scheduler state (Ray #30838), so a trial restored
    past a rung, which that rung promoted before the restart, would be judged again on a later,
    full-size epoch against an empty rung. Epochs here are the engine's own, restored with the
    trial, and every epoch is reported (shared ones too), so the exact epoch is always seen once.
    """
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.schedulers.async_hyperband import _Bracket

    class ExactBracket(_Bracket):
        def on_result(self, trial: Any, cur_iter: int, cur_rew: float | None) -> str:
            for milestone, recorded in self._rungs:
                if cur_iter != milestone or trial.trial_id in recorded or cur_rew is None:
                    continue
                cutoff = self.cutoff(recorded)
                recorded[trial.trial_id] = cur_rew
                if cutoff is not None and cur_rew < float(cutoff):  # type: ignore[arg-type]
                    return str(TrialScheduler.STOP)
                break
            return str(TrialScheduler.CONTINUE)

    bracket = ExactBracket(min(milestones), max(milestones) + 1, reduction_factor, 0)
    bracket._rungs = [(float(m), {}) for m in sorted(milestones, reverse=True)]
    return bracket
