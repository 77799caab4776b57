"""Experiments in object storage (``s3://``, ``gs://``, any URI ``pyarrow.fs`` opens), read
through a local mirror of their tables.

``egotune results ... --storage s3://bucket/prefix`` copies what the readers need of each
experiment: ``experiment.json``, ``trials.parquet``, ``exploits.parquet`` and the part files of
``epochs.parquet/`` and ``predictions.parquet/`` (never checkpoints), into
``$EGOTUNE_CACHE_DIR/storage/<scheme>/<bucket>/<prefix>/`` (else the XDG cache folder), then
reads the copy with the same readers as a local folder. A part file is written once under a
unique name, so a later read fetches only the parts added since, and the files that changed
(``trials.parquet``, by size and modification time); a file gone from the bucket goes from the
mirror. Each copy is written to a temporary name
and renamed, so a reader never sees half a file.

Credentials come from pyarrow's standard chains (environment, config files, instance roles);
``AWS_ENDPOINT_URL`` points it at an S3-compatible server. Nothing of them is written.
"""

from __future__ import annotations

from pathlib import Path

from tuner.cache import cache_dir
from tuner.errors import EgotuneError
from tuner.storage import Bucket, describe_error, is_uri, local_name, pull_tables

__all__ = ["is_uri", "mirror_storage"]


def mirror_storage(uri: str, experiments: list[str] | None = None, *, tables: bool = True) -> Path:
    """The local mirror of the experiments under ``uri`` (``None``: every experiment), brought up
    to date; ``tables=False`` copies ``experiment.json`` and ``trials.parquet`` only (a listing).

    A bucket or prefix that cannot be read is an :class:`EgotuneError` naming ``uri``.
    """
    try:
        bucket = Bucket(uri)
        if not bucket.exists():
            raise EgotuneError(f"--storage {uri}: no such bucket or prefix")
        local = cache_dir("storage") / local_name(uri)
        local.mkdir(parents=True, exist_ok=True)
        for name in bucket.folders() if experiments is None else experiments:
            pull_tables(bucket.child(name), local / name, tables=tables)
    except EgotuneError:
        raise
    except (OSError, ValueError) as exc:
        raise EgotuneError(f"--storage {uri}: {describe_error(exc)}") from None
    return local
