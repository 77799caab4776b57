"""The predictions table: each trial's validation outcome per video and epoch.

``<experiment>/predictions.parquet/`` holds, as atomic part files like ``epochs.parquet/``, one row
per (trial, evaluated epoch, validation video): the video (``user/class/instance``), its user,
its true and predicted class, whether that is correct, the probability of the true class, and
the most probable classes with their probabilities. Rows of a (trial, epoch) are added together
and written once: a retried or resumed trial that evaluates an epoch again is skipped.

With 116 validation videos, one video is 0.86 points of accuracy: this table is what the
intervals and paired tests of :mod:`tuner.results._stats` are computed from.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from tuner.results._store import (
    PART_NAME,
    listed_trials_only,
    part_files,
    read_parquet_file,
    table_metadata,
    write_table_atomic,
)

__all__ = [
    "PREDICTIONS_DIR",
    "PREDICTIONS_KEY",
    "PREDICTION_SCHEMA",
    "PredictionPartWriter",
    "read_predictions",
    "shared_predictions",
]

PREDICTIONS_DIR = "predictions.parquet"
PREDICTIONS_KEY = "__predictions"
"""Key of a Ray Tune result that carries its epoch's predictions (columns as lists); the driver's
callback writes them here, and ``__`` keeps them out of the epochs table."""
PREDICTION_SCHEMA = pa.schema(
    [
        ("trial_id", pa.string()),
        ("epoch", pa.int64()),
        ("video", pa.string()),
        ("user", pa.string()),
        ("true_class", pa.string()),
        ("pred_class", pa.string()),
        ("correct", pa.bool_()),
        ("p_true", pa.float64()),
        ("top_classes", pa.list_(pa.string())),
        ("top_probs", pa.list_(pa.float64())),
    ],
    metadata=table_metadata("predictions"),
)
"""Columns of every predictions part file."""
_FIELDS = ("video", "user", "true_class", "pred_class", "p_true", "top_classes", "top_probs")


class PredictionPartWriter:
    """Streams per-video predictions into ``<experiment_dir>/predictions.parquet/``.

    Each (trial_id, epoch) is written at most once: the keys of completed parts already in the
    folder are loaded at construction, and :meth:`add` drops an epoch it has seen.
    """

    def __init__(self, experiment_dir: str | os.PathLike[str]) -> None:
        self.directory = Path(experiment_dir) / PREDICTIONS_DIR
        self._pending: list[dict[str, Any]] = []
        self._keys: set[tuple[str, int]] = set()
        self._next_index = 0
        for path in part_files(self.directory):
            match = PART_NAME.match(path.name)
            if match:
                self._next_index = max(self._next_index, int(match.group(1)) + 1)
            table = read_parquet_file(path, columns=["trial_id", "epoch"])
            if table is not None:
                keys = zip(
                    table.column("trial_id").to_pylist(),
                    table.column("epoch").to_pylist(),
                    strict=True,
                )
                self._keys.update(keys)

    def add(self, trial_id: str, epoch: int, predictions: Mapping[str, Sequence[Any]]) -> bool:
        """Buffer one epoch's predictions (columns as lists of equal length, the keys of
        :func:`tuner.training.records.video_predictions`); ``False`` when that epoch was already
        added."""
        if (trial_id, epoch) in self._keys:
            return False
        missing = [name for name in _FIELDS if name not in predictions]
        if missing:
            raise ValueError(f"predictions of {trial_id} epoch {epoch} lack {', '.join(missing)}")
        self._keys.add((trial_id, epoch))
        columns = [list(predictions[name]) for name in _FIELDS]
        for video, user, true, pred, p_true, top_classes, top_probs in zip(*columns, strict=True):
            self._pending.append(
                {
                    "trial_id": trial_id,
                    "epoch": epoch,
                    "video": video,
                    "user": user,
                    "true_class": true,
                    "pred_class": pred,
                    "correct": true == pred,
                    "p_true": float(p_true),
                    "top_classes": list(top_classes),
                    "top_probs": [float(p) for p in top_probs],
                }
            )
        return True

    def flush(self) -> Path | None:
        """Write the buffered rows as one new part file (``None`` when there is nothing)."""
        if not self._pending:
            return None
        table = pa.Table.from_pylist(self._pending, schema=PREDICTION_SCHEMA)
        name = f"part-{self._next_index:06d}-{uuid.uuid4().hex[:8]}.parquet"
        self.directory.mkdir(parents=True, exist_ok=True)
        write_table_atomic(table, self.directory / name)
        self._next_index += 1
        self._pending = []
        return self.directory / name


def read_predictions(
    experiment_dir: str | os.PathLike[str], *, listed: Collection[str] | None = None
) -> pd.DataFrame:
    """The predictions table of ``experiment_dir`` (completed parts; a damaged part is skipped
    with a warning naming it), sorted by trial, epoch and video; empty with its columns when the
    experiment has none. Rows of trials the trials table does not list are left out, as in
    :func:`read_epochs` (``listed``: the trials table's ids, when the caller has them)."""
    parts = part_files(Path(experiment_dir) / PREDICTIONS_DIR)
    tables = [table for table in map(read_parquet_file, parts) if table is not None]
    if not tables:
        return PREDICTION_SCHEMA.empty_table().to_pandas()
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    frame = listed_trials_only(frame, experiment_dir, listed)
    return frame.sort_values(["trial_id", "epoch", "video"], kind="stable").reset_index(drop=True)


def shared_predictions(predictions: pd.DataFrame, epochs: pd.DataFrame) -> pd.DataFrame:
    """``predictions`` with the rows of epochs a trial shares with another (prefix sharing):
    an epoch computed once is stored once, under the trial that computed it (the epochs
    table's ``computed_by``); each trial that shares it gets a copy under its own id."""
    if predictions.empty or "computed_by" not in epochs.columns:
        return predictions
    shared = epochs.loc[
        epochs["computed_by"].notna() & (epochs["computed_by"] != epochs["trial_id"]),
        ["trial_id", "epoch", "computed_by"],
    ]
    if shared.empty:
        return predictions
    copies = shared.merge(
        predictions.rename(columns={"trial_id": "computed_by"}), on=["computed_by", "epoch"]
    ).drop(columns="computed_by")
    frame = pd.concat([predictions, copies[predictions.columns]], ignore_index=True)
    frame = frame.drop_duplicates(subset=["trial_id", "epoch", "video"], keep="first")
    return frame.sort_values(["trial_id", "epoch", "video"], kind="stable").reset_index(drop=True)
