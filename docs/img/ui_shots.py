"""Screenshots of ``egotune ui`` for the docs: the pages of an experiment, in Debian's Chromium.

Usage (from the repository root, after ``egotune demo --storage DIR --name demo``)::

    python docs/img/ui_shots.py DIR demo [--trial ID] [--out docs/img]

Serves ``DIR`` with ``egotune ui``'s app on a loopback port (as ``bench/ui_render.py`` does),
opens the experiments list, the experiment's page and a trial's page (``--trial``, else the best
trial) at 1400 px wide and writes ``ui-experiments.png``, ``ui-experiment.png`` and
``ui-trial.png`` into ``--out`` once every chart has drawn.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.ui_render import BROWSER_ARGS, Server
from tuner import results

# every Plotly chart on the page drawn, and no "loading" placeholder left
DRAWN = """() => {
  const charts = [...document.querySelectorAll('.chart')];
  const drawn = (c) => c.querySelector('.main-svg') || c.querySelector('p');
  return charts.length > 0 && charts.every(drawn) && !document.querySelector('.loading');
}"""


def shoot(storage: Path, name: str, trial: str | None, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("the screenshots need Debian's chromium (apt-get install chromium)")
    experiment = results.load_experiment(name, storage)
    trial = trial or str(results.top_trials(experiment.trials, 1, group=False)["trial_id"][0])
    pages = {
        "ui-experiments.png": "/",
        "ui-experiment.png": f"/experiments/{name}",
        "ui-trial.png": f"/experiments/{name}/trials/{trial}",
    }
    written = []
    with sync_playwright() as driver, Server(storage) as url:
        browser = driver.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        for file, path in pages.items():
            page.goto(url + path)
            page.wait_for_load_state("networkidle")
            if path != "/":
                page.wait_for_function(DRAWN, timeout=60_000)
            page.screenshot(path=str(out / file), full_page=True)
            written.append(out / file)
        browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("storage", type=Path, help="results folder")
    parser.add_argument("experiment", help="experiment name")
    parser.add_argument("--trial", help="trial of the trial page (default: the best)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    for path in shoot(args.storage, args.experiment, args.trial, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
