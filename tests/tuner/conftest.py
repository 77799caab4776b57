"""Fixtures of the tuner tests."""

from __future__ import annotations

import pytest

from tuner.errors import EgotuneError


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Replaces the search's Ray connection: a search that passed its pre-flight checks ends
    with a known error at the point it would start Ray; the list holds each call's address."""
    calls: list[str | None] = []

    def connect(address: str | None, **kwargs: object) -> None:
        calls.append(address)
        raise EgotuneError("pre-flight passed: Ray would start here")

    monkeypatch.setattr("tuner.tune.search.connect", connect)
    return calls
