"""What keeping a search in a bucket costs a trial, against a local folder.

Usage: ``egotune bench storage [--epochs N] [--json] [--no-record]``

Two real single-trial searches, one after the other, through
:func:`tuner.tune.search.run_search` (Ray Tune, the Parquet tables) with the report's Fig. 10
model at its real size (as ``egotune bench epoch_overhead``: ego_rnn_ms, stage 2, ResNet-34,
224 px, 2 frames per clip so that an epoch takes seconds on a CPU), ``checkpoint_every: 1`` so that
every epoch writes a resume state:

* **local**: ``--storage`` a folder on this machine's disk;
* **s3**: ``--storage s3://...`` on moto's S3 server on loopback (``moto[server]``, the dev extra),
  the trial's scratch folder on the same disk.

Reported per storage, from the epoch rows (epochs after the first and before the last, which
waits for its write by design): the seconds a checkpoint blocks the training loop
(``checkpoint_s``) and the report to Tune (``report_s``); the bytes of checkpoint files per
trial-epoch (``checkpoint_bytes``, each uploaded once on a bucket); and, for the bucket, the bytes
of the tables' objects it holds at the end per trial-epoch. Loopback moto has no network latency
or bandwidth limit: on a real bucket the upload takes longer, off the training thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

# run as a script from any folder: the repository root holds the packages
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.epoch_overhead import CPU_SIZED, FIG10, SYNTH
from bench.record import publish

BUCKET = "egotune-bench-storage"


def run(name: str, data: Path, storage: Path | str, epochs: int) -> Any:
    """One single-trial search with a resume state every epoch; its epoch rows."""
    from tuner.results import read_epochs
    from tuner.spaces import parse_space
    from tuner.tune.search import SearchOptions, run_search

    fixed = {**FIG10, **CPU_SIZED, "epochs": epochs, "checkpoint_every": 1}
    doc = {"fixed": fixed, "scheduler": {"algorithm": "grid"}, "resources": {"cpus": 2}}
    options = SearchOptions(data=data, storage=storage, name=name, verbose=0, argv=["bench"])
    outcome = run_search(parse_space(doc, source=f"bench:{name}", name=name), options)
    if outcome.num_errors:
        raise RuntimeError(f"the {name} search failed; see {storage}")
    return read_epochs(outcome.experiment_dir)


def summarize(rows: Any) -> dict[str, float]:
    middle = rows[(rows["epoch"] > 1) & (rows["epoch"] < rows["epoch"].max())]
    return {
        "epochs": len(rows),
        "cpu_epoch_s": float(rows["seconds"].mean()),
        "checkpoint_blocking_s": float(middle["checkpoint_s"].mean()),
        "checkpoint_blocking_max_s": float(middle["checkpoint_s"].max()),
        "report_s": float(middle["report_s"].mean()),
        "checkpoint_bytes_per_epoch": float(rows["checkpoint_bytes"].fillna(0).mean()),
    }


def table_bytes(uri: str) -> int:
    import pyarrow.fs as pafs

    filesystem, root = pafs.FileSystem.from_uri(uri)
    selector = pafs.FileSelector(root, recursive=True)
    infos = filesystem.get_file_info(selector)
    return sum(i.size or 0 for i in infos if ".parquet" in i.path or i.path.endswith(".json"))


def measure(epochs: int) -> dict[str, Any]:
    import pyarrow.fs as pafs

    from data_pipeline import synthesize
    from tests.s3_server import s3_server
    from tuner.tune.session import connect

    with tempfile.TemporaryDirectory(prefix="egotune-bench-storage-") as tmp, s3_server() as s3:
        folder = Path(tmp)
        os.environ["EGOTUNE_SCRATCH_DIR"] = str(folder / "scratch")
        data = synthesize(folder / "data", **SYNTH).root  # type: ignore[arg-type]
        filesystem = pafs.S3FileSystem(
            endpoint_override=s3.endpoint, region="us-east-1", allow_bucket_creation=True
        )
        filesystem.create_dir(BUCKET)
        connect(None, num_cpus=2, include_dashboard=False)
        local = summarize(run("local", data, folder / "results", epochs))
        remote = summarize(run("s3", data, f"s3://{BUCKET}/bench", epochs))
        remote["table_bytes_per_epoch"] = table_bytes(f"s3://{BUCKET}/bench/s3") / epochs
    return {"local": local, "s3": remote}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs of each run (5)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--no-record", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    figures = measure(args.epochs)
    mib = 2**20
    headline: dict[str, Any] = {}
    for where in ("local", "s3"):
        shown = figures[where]
        headline[f"{where}_checkpoint_blocking_s"] = round(shown["checkpoint_blocking_s"], 4)
        headline[f"{where}_report_s"] = round(shown["report_s"], 4)
        headline[f"{where}_MiB_per_epoch"] = round(shown["checkpoint_bytes_per_epoch"] / mib, 1)
    headline["s3_table_KiB_per_epoch"] = round(figures["s3"]["table_bytes_per_epoch"] / 1024, 1)
    return publish("storage", headline, figures, args)


if __name__ == "__main__":
    sys.exit(main())
