"""Fixtures of the tuner tests."""

from __future__ import annotations

import pytest

from tests.browser import BROWSER_ARGS, CHROMIUM
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


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh page that fails the test on a script error or a request leaving the server."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    requested: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requested.append(request.url))
    yield page
    context.close()
    assert not errors, errors
    assert all(url.startswith(("http://127.0.0.1:", "data:")) for url in requested), requested
