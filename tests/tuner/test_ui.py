"""``egotune ui`` served for real and read with Debian's Chromium through Playwright.

The pages are read from a uvicorn server over hand-made tables with known answers (the grid of
``test_results``), over damaged and half-written experiment folders, and over a real small
search that runs while the page is open.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from tests.browser import needs_chromium
from tests.conftest import tiny_config_values
from tests.tables import assert_every_row_once
from tests.tuner.test_results import write_handmade
from tuner import results
from tuner.cli import main
from tuner.ui import Statistics, TrialStatistics, create_app

SCREENSHOT_DIR_ENV = "EGOTUNE_SCREENSHOT_DIR"  # where to keep the pages' screenshots


@contextmanager
def serving(storage: Path, **options) -> Iterator[str]:
    """The app over ``storage`` on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    options.setdefault("dashboard", None)
    app = create_app(storage, **options)
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, _lower(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, _lower(error.headers), error.read()


def _lower(headers) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def grid_storage(module_tmp) -> Path:
    storage = module_tmp
    write_handmade(storage / "grid")
    return storage


def keep_screenshot(page, name: str) -> None:
    folder = os.environ.get(SCREENSHOT_DIR_ENV)
    if folder:
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def trial_rows(page) -> list[str]:
    return page.eval_on_selector_all("#trials tbody tr", "rows => rows.map(r => r.dataset.trial)")


# -- the JSON the pages draw: the numbers of `egotune results` ------------------------------


def test_the_trial_table_holds_the_trials_table(grid_storage):
    with serving(grid_storage) as url:
        status, headers, body = fetch(f"{url}/api/experiments/grid")
    assert status == 200 and headers["etag"]
    table = json.loads(body)["table"]
    trials = results.read_trials(grid_storage / "grid").set_index("trial_id")
    assert table["params"] == ["gamma", "lr", "milestones", "seed"]
    assert len(table["rows"]) == 24
    for row in table["rows"]:
        assert row["best"] == trials.at[row["trial_id"], "best_val_acc"]
        assert row["params_text"][1] == results.format_number(trials.at[row["trial_id"], "lr"])
        assert row["interval"] is None
    assert "not available" in table["intervals_note"]


def test_an_unchanged_experiment_answers_not_modified(grid_storage):
    with serving(grid_storage) as url:
        _, headers, _ = fetch(f"{url}/api/experiments/grid/pivot?rows=lr")
        status, _, body = fetch(
            f"{url}/api/experiments/grid/pivot?rows=lr", {"If-None-Match": headers["etag"]}
        )
    assert status == 304 and body == b""


def test_importance_is_that_of_results_importance(grid_storage):
    with serving(grid_storage) as url:
        _, _, body = fetch(f"{url}/api/experiments/grid/importance")
    shown = json.loads(body)
    expected = results.param_importances(results.load_experiment("grid", grid_storage).trials)
    assert shown["names"] == list(expected.index)
    assert shown["values"] == pytest.approx(list(expected))


def test_a_wrong_pivot_column_is_a_plain_error(grid_storage):
    with serving(grid_storage) as url:
        status, _, body = fetch(f"{url}/api/experiments/grid/pivot?rows=step_size")
    assert status == 400
    assert json.loads(body) == {"error": "no hyperparameter step_size in grid"}


# -- pages in Chromium ----------------------------------------------------------------------


def test_the_experiment_list_shows_each_experiment(grid_storage, page):
    with serving(grid_storage) as url:
        page.goto(url)
        page.locator("#experiments tbody tr").first.wait_for()
        cells = page.locator("#experiments tbody tr").first.locator("td").all_inner_texts()
        keep_screenshot(page, "ui-experiments-test.png")
    assert cells[0] == "grid"
    assert cells[2:6] == ["ended", "24", "TERMINATED 24", "73.50"]
    assert page.title() == "egotune: experiments"


def test_the_experiment_page_lists_its_trials_sorts_and_filters_them(grid_storage, page):
    with serving(grid_storage) as url:
        page.goto(f"{url}/experiments/grid")
        page.wait_for_function("document.querySelectorAll('#trials tbody tr').length === 24")
        ranked = trial_rows(page)
        page.fill("#filter", "lr=1e-03 seed=2")
        page.wait_for_function("document.querySelectorAll('#trials tbody tr').length === 4")
        filtered = trial_rows(page)
        page.fill("#filter", "")
        page.click("#trials thead th:text-is('Trial')")
        by_id = trial_rows(page)
    trials = results.read_trials(grid_storage / "grid")
    best_first = trials.sort_values("best_val_acc", ascending=False, kind="stable")
    assert ranked == list(best_first["trial_id"])
    chosen = trials[(trials["lr"] == 1e-3) & (trials["seed"] == 2)]
    assert sorted(filtered) == sorted(chosen["trial_id"])
    assert by_id == sorted(trials["trial_id"])


def test_the_curves_chart_draws_the_epochs_of_the_ticked_trials(grid_storage, page):
    with serving(grid_storage) as url:
        page.goto(f"{url}/experiments/grid")
        page.wait_for_function("document.querySelector('#curves').data?.length > 0")
        drawn = page.evaluate(
            "document.querySelector('#curves').data.map(t => [t.xaxis, t.name, t.x, t.y])"
        )
        lines = page.locator("#curves .scatterlayer path.js-line").count()
        ticked = page.eval_on_selector_all(
            "#trials tbody input:checked", "boxes => boxes.map(b => b.closest('tr').dataset.trial)"
        )
    experiment = results.load_experiment("grid", grid_storage)
    top = results.select_trials(experiment, top=3)
    assert sorted(ticked) == sorted(top)
    assert lines == len(drawn) == 3 * 4  # per trial: training and validation, accuracy and loss
    epochs = experiment.epochs.set_index(["trial_id", "epoch"])
    for row, trial_id in enumerate(top):
        axis = "x" if row == 0 else f"x{2 * row + 1}"
        validation = next(t for t in drawn if t[0] == axis and t[1] == "validation")
        assert validation[2] == list(range(1, 8))
        assert validation[3] == [epochs.at[(trial_id, e), "val_acc"] for e in range(1, 8)]


def test_heatmap_cells_are_those_of_results_pivot(grid_storage, page, capsys, monkeypatch):
    monkeypatch.setenv("EGOTUNE_STORAGE", str(grid_storage))
    assert main(["results", "pivot", "grid", "--rows", "lr,milestones", "--cols", "gamma"]) == 0
    printed = [line.split() for line in capsys.readouterr().out.splitlines()[3:]]
    with serving(grid_storage) as url:
        page.goto(f"{url}/experiments/grid")
        page.locator("#pivot table").wait_for()
        # the rows and columns a user picks: lr and milestones down, gamma across
        for param, where in (("gamma", "cols"), ("lr", "rows"), ("milestones", "rows")):
            page.select_option(f"#pivot-controls select[data-param='{param}']", where)
        page.wait_for_function(
            "document.querySelector('#pivot th.corner')?.textContent === 'gamma' && "
            "document.querySelectorAll('#pivot tbody tr').length === 4"
        )
        shown = page.eval_on_selector_all(
            "#pivot tbody tr",
            "rows => rows.map(r => [...r.children].map(c => c.textContent).filter(t => t))",
        )
        best = page.locator("#pivot td.best").inner_text()
        note = page.locator("#pivot-note").inner_text()
    assert [" ".join(cells).split() for cells in shown] == printed
    assert best == "72.50"
    assert "significance marks not available" in note


def test_the_trial_page_shows_its_configuration_and_says_what_is_missing(grid_storage, page):
    with serving(grid_storage) as url:
        page.goto(f"{url}/experiments/grid/trials/t11")
        page.locator("#config tr").first.wait_for()
        config = dict(
            zip(
                page.locator("#config th").all_inner_texts(),
                page.locator("#config td").all_inner_texts(),
                strict=True,
            )
        )
        page.wait_for_function("document.querySelector('#curves').data?.length === 4")
        statistics = page.locator("#statistics-note").inner_text()
        confusion = page.locator("#confusion").inner_html()
        cams_hidden = page.locator("#cam-section").is_hidden()
    assert config == {"gamma": "0.2", "lr": "1e-04", "milestones": "[40, 80]", "seed": "2"}
    assert statistics.startswith("They are not available without the per-clip predictions")
    assert confusion == ""
    assert cams_hidden  # no "CAM strips" heading over nothing


def test_the_compare_page_flags_the_keys_that_differ(grid_storage, page):
    with serving(grid_storage) as url:
        page.goto(f"{url}/experiments/grid/compare?a=t00&b=t11")
        page.locator("#config tr.differs").first.wait_for()
        differs = page.locator("#config tr.differs th").all_inner_texts()
        paired = page.locator("#paired-note").inner_text()
        page.wait_for_function("document.querySelector('#curves').data?.length === 4")
    assert differs == ["gamma", "milestones", "seed"]
    assert paired.startswith("The paired test is not available")


def test_the_pages_draw_what_the_statistics_give(grid_storage, page, tmp_path):
    """The seam the predictions' statistics plug into: intervals, marks, confusion, CAM strips."""
    strip = tmp_path / "t11-cam.png"
    Image.new("RGB", (320, 60), (200, 80, 40)).save(strip)

    class Given(Statistics):
        def intervals(self, experiment):
            return pd.DataFrame({"low": [70.25], "high": [76.75]}, index=["t11"])

        def pivot_marks(self, experiment, rows, cols, agg):
            table = results.pivot_table(experiment.trials, rows, cols, agg=agg)
            return table >= 72.0

        def trial(self, experiment, trial_id):
            return TrialStatistics(["a", "b"], [[3, 1], [0, 4]], [75.0, 100.0], [strip])

    with serving(grid_storage, statistics=Given()) as url:
        page.goto(f"{url}/experiments/grid")
        page.locator("#pivot td.indistinct").first.wait_for()
        best = page.locator("#trials tr[data-trial='t11'] td.best").inner_text()
        marked = page.locator("#pivot td.indistinct").count()
        page.goto(f"{url}/experiments/grid/trials/t11")
        page.wait_for_function("document.querySelector('#confusion').data?.length === 1")
        confusion = page.evaluate("document.querySelector('#confusion').data[0].z")
        image = page.locator("#cams img").evaluate("img => img.decode().then(() => img.width)")
        cams_shown = page.locator("#cam-section").is_visible()
        unnamed = fetch(f"{url}/experiments/grid/trials/t11/cam/other.png")
    assert best == "73.50 [70.25, 76.75]"
    assert marked == 2  # the cells 72.00 and 72.50 (gamma and lr down, milestones across)
    assert confusion == [[3, 1], [0, 4]]
    assert image == 320 and cams_shown
    assert unnamed[0] == 404


def test_the_trial_page_names_tunes_folder_of_the_trial_and_what_it_holds(tmp_path):
    """Tune names a trial's folder ``<trainable>_<trial id>``; with its per-trial logs off, the
    folder holds only the checkpoints it registered (and error.txt after a failure)."""
    from tuner.ui.views import folder_line, trial_folders

    folder = tmp_path / "train_trial_1c6c2_00001"
    for name in ("checkpoint_000000", "checkpoint_000001"):
        (folder / name).mkdir(parents=True)
    (tmp_path / "train_trial_1c6c2_000010").mkdir()  # another trial whose id starts the same
    assert trial_folders(tmp_path, "1c6c2_00001") == [folder]
    assert folder_line(folder) == f"{folder} (2 checkpoint pointer(s))"
    (folder / "error.txt").write_text("Traceback")
    assert folder_line(folder) == f"{folder} (error.txt, 2 checkpoint pointer(s))"


# -- bad input: a clear page, no traceback, nothing written ---------------------------------


def test_a_storage_folder_without_experiments_says_so(tmp_path, page):
    (tmp_path / "_prerequisites").mkdir()
    with serving(tmp_path) as url:
        page.goto(url)
        page.locator("#notice p").first.wait_for()
        text = page.locator("#notice").inner_text()
        rows = page.locator("#experiments tbody tr").count()
    assert text.startswith(f"No experiments in {tmp_path} yet.")
    assert rows == 0


def test_a_storage_folder_that_does_not_exist_says_so_and_is_not_created(tmp_path, page):
    missing = tmp_path / "results"
    with serving(missing) as url:
        page.goto(url)
        page.locator("#notice p").first.wait_for()
        text = page.locator("#notice").inner_text()
    assert text.startswith(f"{missing} does not exist yet.")
    assert not missing.exists()


@pytest.fixture
def damaged_storage(tmp_path) -> Path:
    """``broken``: an unreadable trials table; ``torn``: a damaged part file; ``starting``: only
    experiment.json, a temporary file being written beside it; ``garbled``: bad JSON."""
    for name in ("broken", "torn"):
        write_handmade(tmp_path / name)
    (tmp_path / "broken" / "trials.parquet").write_bytes(b"PAR1 not a table")
    first_part = sorted((tmp_path / "torn" / "epochs.parquet").glob("part-*"))[0]
    first_part.write_bytes(first_part.read_bytes()[:200])
    results.write_experiment_metadata(
        tmp_path / "starting", space_name="demo", space_text="grid: {}", overrides={},
        dataset_fingerprint="x", argv=["egotune", "search"],
    )  # fmt: skip
    (tmp_path / "starting" / "epochs.parquet").mkdir()
    (tmp_path / "starting" / "epochs.parquet" / ".part-000000-00.parquet.1f.tmp").write_bytes(b"x")
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "experiment.json").write_text("{ half written")
    return tmp_path


def test_damaged_and_unfinished_experiments_get_clear_pages(damaged_storage, page):
    before = tree(damaged_storage)
    with serving(damaged_storage) as url:
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#experiments tbody tr').length === 4")
        listed = {
            row.locator("td").first.inner_text(): row.inner_text()
            for row in page.locator("#experiments tbody tr").all()
        }
        texts = {}
        for name in ("broken", "torn", "starting", "garbled"):
            page.goto(f"{url}/experiments/{name}")
            page.locator("#notice p").first.wait_for()
            page.wait_for_timeout(300)
            texts[name] = page.locator("main").inner_text()
        keep_screenshot(page, "ui-damaged-test.png")
    assert "cannot be read" in listed["garbled"] and "no trials yet" in listed["broken"]
    broken = texts["broken"]
    assert f"skipping unreadable Parquet file {damaged_storage}/broken/trials.parquet" in broken
    assert "0 trials" in broken and "No trial has reported yet" not in broken
    torn = texts["torn"]
    assert "skipping unreadable Parquet file" in torn and "part-000000" in torn
    assert "24 of 24 trials" in torn
    assert "No trial has reported yet" in texts["starting"]
    assert "garbled: cannot be read" in texts["garbled"]
    assert all("Traceback" not in text for text in texts.values())
    assert tree(damaged_storage) == before


def test_an_experiment_not_there_yet_answers_404_with_a_waiting_page(grid_storage):
    with serving(grid_storage) as url:
        status, _, body = fetch(f"{url}/experiments/later")
        api_status, _, api_body = fetch(f"{url}/api/experiments/later")
        unknown = fetch(f"{url}/api/experiments/grid/trials/t99")
        outside = fetch(f"{url}/api/experiments/..%2F..%2Fetc")
    assert status == 404 and b'data-page="experiment"' in body
    assert api_status == 404 and b"no experiment 'later'" in api_body
    assert unknown[0] == 404 and b"no trial 't99' in grid" in unknown[2]
    assert outside[0] == 404


# -- guards ---------------------------------------------------------------------------------


def test_without_a_token_only_loopback_names_are_served(grid_storage):
    with serving(grid_storage) as url:
        ok = fetch(f"{url}/api/experiments")
        rebound = fetch(f"{url}/api/experiments", {"Host": "attacker.example:8266"})
        posted = urllib.request.Request(f"{url}/api/experiments", data=b"{}", method="POST")
        try:
            urllib.request.urlopen(posted, timeout=10)
            post_status = 200
        except urllib.error.HTTPError as error:
            post_status = error.code
    assert ok[0] == 200
    assert "frame-ancestors 'none'" in ok[1]["content-security-policy"]
    assert rebound[0] == 400
    assert post_status == 405


def test_with_a_token_every_request_needs_it(grid_storage):
    with serving(grid_storage, token="s3cret-token") as url:  # noqa: S106
        plain = fetch(f"{url}/api/experiments")
        wrong = fetch(f"{url}/api/experiments", {"Authorization": "Bearer nope"})
        bearer = fetch(f"{url}/api/experiments", {"Authorization": "Bearer s3cret-token"})
        login = fetch(f"{url}/experiments/grid?token=s3cret-token")
        cookie = login[1]["set-cookie"].split(";")[0]
        with_cookie = fetch(f"{url}/experiments/grid", {"Cookie": cookie})
        other_host = fetch(f"{url}/api/experiments", {"Host": "head-node:8266", "Cookie": cookie})
    assert plain[0] == wrong[0] == 401 and b"needs its token" in plain[2]
    assert bearer[0] == 200
    assert login[0] == 303 and login[1]["location"] == "/experiments/grid"
    assert "httponly" in login[1]["set-cookie"].lower()
    assert "samesite=strict" in login[1]["set-cookie"].lower()
    assert with_cookie[0] == 200 and other_host[0] == 200


def test_the_dashboard_link_shows_only_when_the_dashboard_answers(grid_storage):
    handler = http.server.BaseHTTPRequestHandler  # answers every GET with 501: an answer
    dashboard = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=dashboard.serve_forever, daemon=True).start()
    up = f"http://127.0.0.1:{dashboard.server_address[1]}"
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}"
        try:
            with serving(grid_storage, dashboard=up) as url:
                shown = fetch(url)[2].decode()
            with serving(grid_storage, dashboard=down) as url:
                hidden = fetch(url)[2].decode()
        finally:
            dashboard.shutdown()
    assert f'id="dashboard" class="dashboard" href="{up}"' in shown
    assert 'id="dashboard"' not in hidden


def ui_process(*argv: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "tuner.cli", "ui", "--port", "0", *argv]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_command_binds_elsewhere_only_with_a_token(grid_storage):
    process = ui_process("--storage", str(grid_storage), "--host", "0.0.0.0")  # noqa: S104
    try:
        line = process.stdout.readline()
        match = re.search(r"http://\S+:(\d+)/\?token=(\S+) ", line)
        assert match, line + process.stderr.read()
        port, token = match.groups()
        locked = fetch(f"http://127.0.0.1:{port}/api/experiments")
        opened = fetch(f"http://127.0.0.1:{port}/?token={token}")
    finally:
        process.terminate()
        process.wait(10)
    assert line.startswith(f"egotune ui: {grid_storage} at http://")
    assert locked[0] == 401 and opened[0] == 303


def test_the_command_names_a_port_in_use(grid_storage, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        assert main(["ui", "--storage", str(grid_storage), "--port", port]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"egotune: error: --host 127.0.0.1 --port {port}: ")
    assert err.count("\n") == 1


# -- live: a real search appears on the open page -------------------------------------------


@pytest.mark.slow
@needs_chromium
def test_a_real_search_appears_on_the_open_page_while_it_runs(
    synthetic_root, local_ray, tmp_path, page
):
    from tuner.spaces import parse_space
    from tuner.tune.search import SearchOptions, run_search

    fixed = {k: v for k, v in tiny_config_values().items() if k not in ("epochs", "stage1")}
    fixed["crop_size"] = 64  # epochs of a third of a second: the page sees the search run
    doc = {
        "fixed": {**fixed, "model": "ego_rnn", "stage": 1, "epochs": 5},
        "grid": {"lr": [1e-3, 1e-2]},
        "scheduler": {"algorithm": "grid", "max_concurrent": 1},  # one after the other
        "resources": {"cpus": 1, "gpus": 0},
    }
    storage = tmp_path / "results"
    storage.mkdir()
    options = SearchOptions(data=synthetic_root, storage=storage, name="live", verbose=0, argv=[])
    outcome: list = []
    search = threading.Thread(
        target=lambda: outcome.append(run_search(parse_space(doc, name="live"), options))
    )
    with serving(storage, poll_s=0.5) as url:
        page.goto(f"{url}/experiments/live")
        page.locator("#notice p").first.wait_for()
        waiting = page.locator("#notice").inner_text()
        page.evaluate("window.sameDocument = true")
        search.start()
        page.locator("#trials tbody tr").first.wait_for(timeout=240_000)
        running_then = search.is_alive()
        page.wait_for_function("document.querySelector('#curves').data?.length > 0")
        search.join(600)
        page.wait_for_function(
            "[...document.querySelectorAll('#trials tbody tr')].filter("
            "r => r.innerText.includes('TERMINATED')).length === 2",
            timeout=60_000,
        )
        same_document = page.evaluate("window.sameDocument === true")
        shown = sorted(trial_rows(page))
        keep_screenshot(page, "ui-live-test.png")
        intervals = page.locator("#trials td.best").all_inner_texts()
        # the real predictions: the selected epoch's confusion matrix on the trial page
        page.goto(f"{url}/experiments/live/trials/{shown[0]}")
        page.wait_for_function("document.querySelector('#confusion').data?.length === 1")
        confusion = page.evaluate("document.querySelector('#confusion').data[0].z")
    assert "no experiment 'live'" in waiting
    assert outcome and outcome[0].num_errors == 0
    assert running_then, "the first trial appeared only after the search ended"
    assert same_document  # no reload: the rows came in by polling
    assert shown == sorted(results.read_trials(storage / "live")["trial_id"])
    assert all("[" in text for text in intervals)  # accuracy with its 95 % interval
    assert_every_row_once(storage / "live")
    experiment = results.load_experiment(storage / "live")
    expected = results.confusion(experiment, shown[0])["matrix"].to_numpy().tolist()
    assert confusion == expected
