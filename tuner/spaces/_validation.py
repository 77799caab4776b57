"""Every trial of a space checked as a ``TrainConfig`` before anything runs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner.spaces._keys import SpaceError, describe
from tuner.spaces._prerequisites import check_match_keys
from tuner.training.config import TrainConfig, config_warnings

if TYPE_CHECKING:
    from tuner.spaces._space import SearchSpace

__all__ = ["Checked", "validate_trials"]


def _placeholder(name: str) -> str:
    return f"<checkpoint of prerequisite {name}>"


def _check_config(source: str, values: Mapping[str, Any], context: str) -> TrainConfig:
    try:
        return TrainConfig.from_trial(values)
    except ValueError as exc:
        raise SpaceError(source, "", f"{exc} ({context})") from None


def _trial_variants(space: SearchSpace, cell: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The cell with representative values of every sampled key (each candidate at least once)."""
    base = {**cell, **{k: d.candidates()[0] for k, d in space.sample.items()}}
    yield base
    for key, distribution in space.sample.items():
        for candidate in distribution.candidates()[1:]:
            yield {**base, key: candidate}
    for point in space.scheduler.points_to_evaluate:
        yield {**cell, **point}


@dataclass(frozen=True)
class Checked:
    """What checking a space's trials found."""

    max_epochs: int
    """The most epochs a trial trains."""
    warnings: tuple[str, ...]
    """Configuration warnings, each naming the file, the key and how many trials it hits."""
    trial_configs: tuple[TrainConfig, ...]
    """Each cell's configuration (sampled keys at a first candidate, prerequisite keys as
    placeholders)."""
    prerequisite_configs: tuple[TrainConfig, ...]
    """Each prerequisite run's configuration."""


def validate_trials(space: SearchSpace) -> Checked:
    """Check every trial with ``TrainConfig.from_trial`` (each sampled key at every candidate of
    its distribution, once at least), and every prerequisite run."""
    check_match_keys(space)
    provided = {p.provides: _placeholder(p.name) for p in space.trial_level_prerequisites()}
    varying = space.varying_keys
    max_epochs = 1
    warned: dict[str, int] = {}
    cells: list[TrainConfig] = []
    for cell in space.expand():
        for variant, trial in enumerate(_trial_variants(space, cell)):
            shown = {k: trial[k] for k in varying if k in trial}
            context = f"trial {describe(shown)}" if shown else "every trial"
            config = _check_config(space.source, {**trial, **provided}, context)
            if variant == 0:
                cells.append(config)
            max_epochs = max(max_epochs, config.total_epochs)
            for message in config_warnings(config):
                warned[message] = warned.get(message, 0) + 1
    runs = []
    for run in space.prerequisite_runs():
        needs = {space.prerequisites[name].provides: _placeholder(name) for name, _ in run.requires}
        values = {**space.fixed, **run.config, **needs}
        runs.append(_check_config(space.source, values, f"prerequisite {run.name}"))
    counted = not space.is_sampled and not space.scheduler.points_to_evaluate
    lines = tuple(
        f"{space.source}: {m}" + (f" ({n} trial(s))" if counted else "") for m, n in warned.items()
    )
    return Checked(max_epochs, lines, tuple(cells), tuple(runs))
