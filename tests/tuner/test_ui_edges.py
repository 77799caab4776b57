"""``egotune ui`` at its edges, over HTTP against a real server: odd flags, another loopback
address, a path that looks like another site, a pivot with one column on both axes."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.tuner.test_results import write_handmade
from tuner.cli import main

TOKEN = "edge-token-0123456789"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
    try:
        with opener.open(url, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def serve(storage: Path, *flags: str) -> tuple[subprocess.Popen[str], str]:
    """``egotune ui`` in its own process on a free port; returns it and its base URL."""
    ui = subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "ui", "--storage", str(storage), "--port", "0",
         "--dashboard", "http://127.0.0.1:9", *flags],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert ui.stdout is not None
    line = ui.stdout.readline()  # "egotune ui: STORAGE at http://HOST:PORT/... (read-only ...)"
    url = line.split(" at ", 1)[1].split()[0]
    return ui, url.split("?", 1)[0].rstrip("/")


@pytest.fixture(scope="module")
def storage(module_tmp) -> Path:
    write_handmade(module_tmp / "grid")
    return module_tmp


@pytest.mark.parametrize("poll", ["nan", "inf"])
def test_a_poll_that_is_not_a_finite_number_is_refused(storage, capsys, poll):
    assert main(["ui", "--storage", str(storage), "--poll", poll]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"egotune: error: --poll {float(poll)}: must be a finite number of seconds more than 0"
    ]


def test_another_loopback_address_answers_and_keeps_other_sites_out(storage):
    ui, base = serve(storage, "--host", "127.0.0.2")
    try:
        assert base.startswith("http://127.0.0.2:")
        status, _, body = fetch(f"{base}/api/experiments")
        assert status == 200 and b'"grid"' in body
        status, _, body = fetch(f"{base}/api/experiments/grid/pivot?rows=lr&cols=lr")
        assert status == 400 and b"rows/cols: lr in both" in body
    finally:
        ui.terminate()
        ui.wait(10)


def test_a_token_redirect_never_leaves_the_site(storage, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    ui, base = serve(storage, "--host", "127.0.0.2", "--token-file", str(token_file))
    try:
        for path in ("//evil.example/..", "//evil.example/", "///evil.example"):
            status, headers, _ = fetch(f"{base}{path}?token={TOKEN}")
            location = headers.get("location", "")
            assert status == 303 and location.startswith("/") and not location.startswith("//")
    finally:
        ui.terminate()
        ui.wait(10)


def test_a_record_of_the_wrong_shape_leaves_the_other_experiments_listed(storage, tmp_path):
    import json
    import shutil

    shutil.copytree(storage / "grid", tmp_path / "grid")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "experiment.json").write_text('{"space": 5}')
    ui, base = serve(tmp_path)
    try:
        status, _, body = fetch(f"{base}/api/experiments")
        rows = {row["name"]: row for row in json.loads(body)["experiments"]}
        assert status == 200 and rows["grid"]["error"] is None
        assert rows["broken"]["state"] == "unreadable"
        assert f"{tmp_path / 'broken' / 'experiment.json'}: unreadable" in rows["broken"]["error"]
    finally:
        ui.terminate()
        ui.wait(10)
