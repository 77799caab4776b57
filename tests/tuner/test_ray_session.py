"""Security defaults of the Ray connection: loopback dashboard, token for remote clusters."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import ray

from tuner.tune import session as ray_session


def test_a_local_ray_puts_its_dashboard_on_loopback(monkeypatch):
    seen: dict = {}

    def fake_init(**kwargs):
        seen.update(kwargs)
        return SimpleNamespace(dashboard_url="127.0.0.1:8265")

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(
        ray, "get_runtime_context", lambda: SimpleNamespace(gcs_address="127.0.0.1:6379")
    )
    session = ray_session.connect(None, num_cpus=1)
    assert seen["dashboard_host"] == "127.0.0.1" and "address" not in seen
    assert session.dashboard_url == "http://127.0.0.1:8265" and session.started_here


@pytest.mark.parametrize("mode", [None, "disabled"])
def test_the_token_is_used_when_one_exists_unless_a_mode_was_chosen(monkeypatch, tmp_path, mode):
    token = tmp_path / "auth_token"
    token.write_text("secret")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    if mode is None:
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    else:
        monkeypatch.setenv("RAY_AUTH_MODE", mode)
    ray_session.use_token_when_available()
    assert os.environ["RAY_AUTH_MODE"] == (mode or "token")
