"""How fast ``egotune ui`` draws the experiment page of a large experiment, in Chromium.

Usage: ``egotune bench ui_render [--trials N] [--epochs E] [--repeats R] [--json] [--no-record]``

Writes a hand-made experiment of ``--trials`` trials (200 by default: a 5 x 2 x 4 x 5 grid over
lr, weight_decay, milestones and gamma, Fig. 10-style, up to ``--epochs`` epochs each in two
stages, a third of the trials stopped early as ASHA would, every timing column filled) streamed
as the search's callback writes it (many small part files), serves it with ``egotune ui``'s app on
loopback and opens its page in Debian's Chromium (Playwright), ``--repeats`` times:

- ``first_view_s``: from navigation to the trial table with every trial, the learning curves and
  the pivot heatmap on screen (what the < 2 s goal is about), with a fresh server (nothing read
  yet: the first request reads every part file) and a fresh browser (Plotly's 4.8 MB bundle
  neither cached nor compiled), the worst case;
- ``complete_s``: until every section is drawn (importance, parallel coordinates, timing too);
- ``warm_...``: the same page on the same server (tables already read, as ``egotune ui`` reads
  them when it starts) in another fresh browser;
- ``revisit_...``: the page again in that browser (Plotly's bundle cached and compiled);
- ``load_experiment_s``: ``tuner.results.load_experiment`` alone on the folder.

Medians over the repeats; the JSON keeps every run.
"""

from __future__ import annotations

import argparse
import itertools
import math
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# run as a script from any folder: the repository root holds the packages
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from bench.record import publish
from tuner import results
from tuner.ui import create_app

GRID = {
    "lr": [1e-4, 2e-4, 5e-4, 1e-3, 2e-3],
    "weight_decay": [4e-3, 4e-5],
    "milestones": [[30, 70], [40, 80], [50, 100], [60, 120]],
    "gamma": [0.1, 0.2, 0.3, 0.5, 0.7],
}
BROWSER_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
FIRST_VIEW = """(n) => {
  const rows = document.querySelectorAll('#trials tbody tr').length;
  const curves = document.querySelector('#curves').data?.length > 0;
  const pivot = document.querySelector('#pivot table') !== null;
  return rows === n && curves && pivot ? performance.now() / 1000 : false;
}"""
COMPLETE = "() => document.body.dataset.drawn ? performance.now() / 1000 : false"


def write_experiment(exp_dir: Path, trials: int, epochs: int) -> int:
    """The hand-made experiment; returns the number of epoch rows."""
    grid = list(itertools.product(*GRID.values()))
    space = {"grid": GRID, "fixed": {"model": "ego_rnn_ms", "stage": 2, "epochs": epochs}}
    results.write_experiment_metadata(
        exp_dir, space_name="ui_render", space_text=yaml.safe_dump(space, sort_keys=False),
        overrides={}, dataset_fingerprint="bench", argv=["egotune", "bench", "ui_render"],
    )  # fmt: skip
    table = results.TrialsTableWriter(exp_dir)
    rows = 0
    with results.EpochPartWriter(exp_dir, flush_interval_s=0) as parts:
        for index in range(trials):
            lr, weight_decay, milestones, gamma = grid[index % len(grid)]
            trial_id = f"bench_{index:05d}"
            ran = epochs if index % 3 else max(2, epochs // (2 + index % 2))  # ASHA-stopped
            quality = 70 - 8 * abs(math.log10(lr / 5e-4)) + 3 * gamma - 1e3 * weight_decay
            history = [
                _epoch(trial_id, e, epochs, lr, milestones, gamma, quality)
                for e in range(1, ran + 1)
            ]
            for start in range(0, ran, 10):  # one part per 10 epochs: a flush every few seconds
                for row in history[start : start + 10]:
                    parts.add(row)
                parts.flush()
            rows += ran
            best = max(history, key=lambda r: r["val_acc"])
            table.update(
                trial_id,
                {
                    "status": "TERMINATED", "lr": lr, "weight_decay": weight_decay,
                    "milestones": milestones, "gamma": gamma, "seed": 0,
                    "best_val_acc": best["val_acc"], "best_epoch": best["epoch"],
                    "epochs_run": ran, "wall_seconds": 9.0 * ran, "early_stopped": ran < epochs,
                    "num_failures": 0,
                },
            )  # fmt: skip
    table.write()
    return rows


def _epoch(
    trial_id: str,
    epoch: int,
    epochs: int,
    lr: float,
    milestones: list[int],
    gamma: float,
    quality: float,
) -> dict[str, Any]:
    stage = 1 if epoch <= epochs // 4 else 2
    stage_start = 0 if stage == 1 else epochs // 4
    scaled = [m * epochs // 150 for m in milestones]
    rate = lr * gamma ** sum(epoch - stage_start > m for m in scaled)
    progress = 1 - math.exp(-epoch / (epochs / 4))
    wobble = 1.5 * math.sin(epoch * 1.7 + int(trial_id[-5:]) % 7)  # repeatable noise
    return {
        "trial_id": trial_id, "epoch": epoch, "stage": stage, "stage_epoch": epoch - stage_start,
        "lr": rate, "train_acc": min(99.0, quality * progress + 20 * progress),
        "val_acc": quality * progress + wobble, "train_loss": 4.1 * (1 - progress) + 0.2,
        "val_loss": 4.1 * (1 - progress) + 0.6, "seconds": 9.0, "train_s": 7.0,
        "data_wait_s": 0.4, "val_s": 1.3, "checkpoint_s": 0.2 if epoch % 5 == 0 else 0.0,
        "checkpoint_bytes": 160_000_000 if epoch % 5 == 0 else 0, "report_s": 0.05,
        "startup_s": 6.0 if epoch == 1 else None,
    }  # fmt: skip


class Server:
    """The app in a thread on a free loopback port."""

    def __init__(self, storage: Path) -> None:
        import uvicorn

        self.sock = socket.create_server(("127.0.0.1", 0))
        app = create_app(storage, dashboard=None, poll_s=60)  # no poll inside a measurement
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def open_page(context: Any, url: str, trials: int) -> tuple[float, float]:
    """Seconds from navigation to the first view and to every section drawn."""
    page = context.new_page()
    try:
        page.goto(url, wait_until="commit")
        first = page.wait_for_function(FIRST_VIEW, arg=trials, timeout=60_000).json_value()
        complete = page.wait_for_function(COMPLETE, timeout=60_000).json_value()
        return float(first), float(complete)
    finally:
        page.close()


def visits(browser: Any, storage: Path, trials: int) -> dict[str, tuple[float, float]]:
    """The page opened on a fresh server (cold), then again in a fresh browser (warm), then
    again in that browser (revisit: Plotly's bundle cached and compiled)."""
    fresh, again = (browser.new_context(viewport={"width": 1400, "height": 900}) for _ in "12")
    try:
        with Server(storage) as url:
            page = f"{url}/experiments/large"
            cold = open_page(fresh, page, trials)
            warm = open_page(again, page, trials)
            revisit = open_page(again, page, trials)
    finally:
        fresh.close()
        again.close()
    return {"cold": cold, "warm": warm, "revisit": revisit}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("ui_render needs Debian's chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="egotune-ui-bench-") as folder:
        storage = Path(folder)
        started = time.perf_counter()
        rows = write_experiment(storage / "large", args.trials, args.epochs)
        written_s = time.perf_counter() - started
        loads = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            results.load_experiment("large", storage)
            loads.append(time.perf_counter() - started)
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
            runs = [visits(browser, storage, args.trials) for _ in range(args.repeats)]
            browser.close()
        parts = len(list((storage / "large" / results.EPOCHS_DIR).glob("*.parquet")))
    median = statistics.median
    return {
        "trials": args.trials,
        "epoch_rows": rows,
        "part_files": parts,
        "write_s": written_s,
        "load_experiment_s": median(loads),
        "first_view_s": median(r["cold"][0] for r in runs),
        "complete_s": median(r["cold"][1] for r in runs),
        "warm_first_view_s": median(r["warm"][0] for r in runs),
        "warm_complete_s": median(r["warm"][1] for r in runs),
        "revisit_first_view_s": median(r["revisit"][0] for r in runs),
        "revisit_complete_s": median(r["revisit"][1] for r in runs),
        "runs": runs,
        "loads": loads,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="trials (200)")
    parser.add_argument("--epochs", type=int, default=40, help="epochs of a full trial (40)")
    parser.add_argument("--repeats", type=int, default=5, help="page loads of each kind (5)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-record", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    figures = measure(args)
    headline = {
        "trials": figures["trials"],
        "epoch_rows": figures["epoch_rows"],
        "part_files": figures["part_files"],
        "first_view_s": round(figures["first_view_s"], 2),
        "complete_s": round(figures["complete_s"], 2),
        "warm_first_view_s": round(figures["warm_first_view_s"], 2),
        "warm_complete_s": round(figures["warm_complete_s"], 2),
        "revisit_first_view_s": round(figures["revisit_first_view_s"], 2),
        "revisit_complete_s": round(figures["revisit_complete_s"], 2),
        "load_experiment_s": round(figures["load_experiment_s"], 2),
    }
    return publish("ui_render", headline, figures, args)


if __name__ == "__main__":
    sys.exit(main())
