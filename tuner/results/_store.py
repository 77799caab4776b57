"""Parquet tables of a search: atomic part files, the trials table and their readers.

An experiment folder holds two tables::

    <storage>/<experiment>/
        trials.parquet            one row per trial; a single file rewritten whenever it changes
        epochs.parquet/           one row per (trial_id, epoch); a directory of part files
            part-000000-1f3a9c0d.parquet
            part-000001-77b2e415.parquet

Every file is first written under a temporary name in its final directory (``.<name>.<hex>.tmp``),
fsynced and then renamed with ``os.replace``: a reader sees the old file or the new one, never a
partial one. Temporary names start with ``.`` and do not end in ``.parquet``, so pandas and
pyarrow (which skip dot files) and DuckDB's ``read_parquet('.../epochs.parquet/*.parquet')`` all
ignore them.

Every epochs part has the same columns and types (:data:`EPOCH_SCHEMA`: int64 counters, float64
metrics), so the parts concatenate however the trainables differ; plain metrics the schema does not
name are kept as a JSON object in the ``extra`` column, which :func:`read_epochs` expands into
columns. Both tables carry ``schema_version`` in their Parquet key-value metadata.

This module does not import ray: replays and benchmarks stream rows with :class:`EpochPartWriter`.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import time
import uuid
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tuner.atomic import write_atomic

__all__ = [
    "CAM_DIR",
    "COMPUTED_BY",
    "EPOCHS_DIR",
    "EPOCH_SCHEMA",
    "EXPLOITS_FILE",
    "EXPLOIT_ID",
    "GENERATION",
    "PART_NAME",
    "SCHEMA_VERSION",
    "TRIALS_FILE",
    "TRIAL_SUMMARY_SCHEMA",
    "EpochPartWriter",
    "StorageWriteError",
    "TrialsTableWriter",
    "part_files",
    "read_epochs",
    "read_exploits",
    "read_parquet_file",
    "read_trials",
    "storage_write_error",
    "table_metadata",
    "write_table_atomic",
]

SCHEMA_VERSION = 1
"""Version of the table layout; bump it when a column changes meaning or type."""
TRIALS_FILE = "trials.parquet"
EPOCHS_DIR = "epochs.parquet"
EXPLOITS_FILE = "exploits.parquet"
"""One row per exploit of a population search (``tuner.tune.schedulers.pbt``)."""
CAM_DIR = "cam"
"""Folder of ``egotune results cam`` strips in an experiment (``cam/<trial_id>/*.png``)."""

_KEY_COLUMNS = [pa.field("trial_id", pa.string()), pa.field("epoch", pa.int64())]
_EPOCH_VALUE_COLUMNS = [
    ("stage", pa.int64()),
    ("stage_epoch", pa.int64()),
    ("train_loss", pa.float64()),
    ("train_acc", pa.float64()),
    ("val_loss", pa.float64()),
    ("val_acc", pa.float64()),
    ("lr", pa.float64()),
    ("ms_loss", pa.float64()),
    ("sd_loss", pa.float64()),
    ("best_val_acc", pa.float64()),
    ("best_epoch", pa.int64()),
    ("seconds", pa.float64()),
    ("clips_per_s", pa.float64()),
    # where the epoch's wall time went (docs/performance.md, "Per-epoch budget")
    ("train_s", pa.float64()),
    ("data_wait_s", pa.float64()),
    ("val_s", pa.float64()),
    ("checkpoint_s", pa.float64()),
    ("checkpoint_bytes", pa.int64()),
    ("report_s", pa.float64()),
    ("startup_s", pa.float64()),
    # the trial that computed the epoch: another one for epochs shared through prefix sharing
    ("computed_by", pa.string()),
    # the clips it trained and validated on (smaller on a fidelity rung) and its counted FLOPs
    ("frames", pa.int64()),
    ("crop_size", pa.int64()),
    ("flops", pa.float64()),
]
COMPUTED_BY = "computed_by"
GENERATION = "generation"
"""Epochs of a population search: the exploits behind the config the epoch ran with."""
EXPLOIT_ID = "exploit_id"
"""Exploits table: the exploit's own id; epochs of a population search: the id of the last
exploit behind the config the epoch ran with (none before the first)."""


def table_metadata(table: str) -> dict[bytes, bytes]:
    return {b"schema_version": str(SCHEMA_VERSION).encode(), b"egotune.table": table.encode()}


EPOCH_SCHEMA = pa.schema(
    [*_KEY_COLUMNS, *(pa.field(n, t) for n, t in _EPOCH_VALUE_COLUMNS), ("extra", pa.string())],
    metadata=table_metadata("epochs"),
)
"""Columns of every epochs part file; ``extra`` holds other plain metrics as a JSON object."""

TRIAL_SUMMARY_SCHEMA = pa.schema(
    [
        ("seed", pa.int64()),
        ("best_val_acc", pa.float64()),
        ("best_epoch", pa.int64()),
        ("epochs_run", pa.int64()),
        ("wall_seconds", pa.float64()),
        # the trial's cost: counted FLOPs of its epochs, their seconds times its GPUs
        ("flops", pa.float64()),
        ("gpu_seconds", pa.float64()),
        ("checkpoint", pa.string()),
        ("early_stopped", pa.bool_()),
        ("num_failures", pa.int64()),
    ]
)
"""Typed summary columns of trials.parquet; they follow ``trial_id``, ``status`` and the
hyperparameter columns (whose types are inferred from their values)."""

_TRIAL_LEAD_COLUMNS = ("trial_id", "status")
PART_NAME = re.compile(r"^part-(\d+)-[0-9a-f]+\.parquet$")
_REJECTED = object()  # a value that does not fit its column's type


# -- atomic files ---------------------------------------------------------------------------


class StorageWriteError(OSError):
    """A results file that cannot be written for a reason the user fixes (a full disk, a folder
    without write permission); still an ``OSError`` with the original ``errno``."""

    def __str__(self) -> str:
        return str(self.strerror)


_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def storage_write_error(exc: OSError, path: Path) -> OSError:
    """``exc`` as a :class:`StorageWriteError` naming ``path``'s folder and what to do, or
    ``exc`` itself when it is neither a full disk nor a refused write."""
    if exc.errno in _FULL:
        advice = "free space on its disk or choose another --storage"
    elif exc.errno in _DENIED:
        advice = "fix the folder's permissions or choose another --storage"
    else:
        return exc
    reason = exc.strerror or os.strerror(exc.errno or 0)
    message = f"{path.parent}: cannot write {path.name} there ({reason}); {advice}"
    return StorageWriteError(exc.errno, message)


def write_table_atomic(table: pa.Table, path: Path) -> None:
    try:
        write_atomic(path, lambda handle: pq.write_table(table, handle))
    except OSError as exc:
        error = storage_write_error(exc, path)
        if error is exc:
            raise
        raise error from None


# -- value coercion -------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """``value`` as a Python bool/int/float/str, ``None`` for None, or ``_REJECTED``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    item = getattr(value, "item", None)  # numpy and torch scalars
    if callable(item) and getattr(value, "ndim", None) == 0:
        converted = item()
        if isinstance(converted, bool | int | float | str):
            return converted
    return _REJECTED


def _coerce(value: Any, type_: pa.DataType) -> Any:
    """``value`` converted for a column of ``type_``, or ``_REJECTED`` if it does not fit."""
    value = _plain(value)
    if value is None or value is _REJECTED:
        return value
    if pa.types.is_string(type_):
        return value if isinstance(value, str) else _REJECTED
    if pa.types.is_boolean(type_):
        return value if isinstance(value, bool) else _REJECTED
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _REJECTED
    if pa.types.is_integer(type_):
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            return _REJECTED
        return int(value)
    return float(value)


def _json_scalar(value: Any) -> Any:
    # JSON has no NaN or infinity (DuckDB's parser rejects them): store null instead.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- part files -----------------------------------------------------------------------------


def part_files(directory: Path) -> list[Path]:
    """Completed part files of ``directory`` in name order; temporary files are not listed."""
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix == ".parquet" and not p.name.startswith((".", "_")) and p.is_file()
    )


def read_parquet_file(path: Path, columns: list[str] | None = None) -> pa.Table | None:
    """The table in ``path``, or ``None`` with a warning naming the file when it is unreadable."""
    try:
        table = pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException, ValueError) as exc:
        warnings.warn(f"skipping unreadable Parquet file {path}: {exc}", stacklevel=3)
        return None
    version = (table.schema.metadata or {}).get(b"schema_version", b"0")
    if int(version) > SCHEMA_VERSION:
        warnings.warn(
            f"{path} has schema_version {version.decode()}, newer than {SCHEMA_VERSION}; "
            "columns may be missing or misread",
            stacklevel=3,
        )
    return table


class EpochPartWriter:
    """Streams epoch rows into ``<experiment_dir>/epochs.parquet/`` as atomic part files.

    Rows are buffered and written as one new part per :meth:`flush`. Each (trial_id, epoch) key is
    written at most once: the keys of the completed parts already in the folder (from an earlier or
    interrupted run of the search) are loaded at construction, and :meth:`add` drops a row whose key
    it has seen. Memory holds the key set and the rows added since the last flush, nothing more.

    ``clock`` (seconds, monotonic) decides when :meth:`maybe_flush` is due; replays pass their own.
    """

    def __init__(
        self,
        experiment_dir: str | os.PathLike[str],
        *,
        flush_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if flush_interval_s < 0:
            raise ValueError(f"flush_interval_s: must be >= 0, got {flush_interval_s!r}")
        self.directory = Path(experiment_dir) / EPOCHS_DIR
        self.directory.mkdir(parents=True, exist_ok=True)
        self._flush_interval_s = flush_interval_s
        self._clock = clock
        self._last_flush = clock()
        self._pending: list[dict[str, Any]] = []
        self._keys: set[tuple[str, int]] = set()
        self._next_index = 0
        self._warned_columns: set[str] = set()
        self._load_existing_parts()

    def _load_existing_parts(self) -> None:
        for path in part_files(self.directory):
            match = PART_NAME.match(path.name)
            if match:
                self._next_index = max(self._next_index, int(match.group(1)) + 1)
            table = read_parquet_file(path, columns=["trial_id", "epoch"])
            if table is not None:
                ids, epochs = (
                    table.column("trial_id").to_pylist(),
                    table.column("epoch").to_pylist(),
                )
                self._keys.update(zip(ids, epochs, strict=True))

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    @property
    def key_count(self) -> int:
        """Number of (trial_id, epoch) keys written or buffered."""
        return len(self._keys)

    @property
    def pending(self) -> int:
        """Rows buffered since the last flush."""
        return len(self._pending)

    def add(self, row: Mapping[str, Any]) -> bool:
        """Buffer ``row``; ``False`` (and nothing buffered) when its key was already added.

        ``row`` needs ``trial_id`` (str) and ``epoch`` (a whole number). Values for the columns of
        :data:`EPOCH_SCHEMA` are converted to their column types; other plain numbers, strings and
        bools go into ``extra``; anything else (lists, mappings, objects) is dropped.
        """
        trial_id, epoch = row.get("trial_id"), _coerce(row.get("epoch"), pa.int64())
        if not isinstance(trial_id, str) or not isinstance(epoch, int):
            raise ValueError(
                f"epoch row needs a str trial_id and an integer epoch, got "
                f"trial_id={trial_id!r}, epoch={row.get('epoch')!r}"
            )
        if (trial_id, epoch) in self._keys:
            return False
        self._keys.add((trial_id, epoch))
        self._pending.append(self._to_record(row, trial_id, epoch))
        return True

    def _to_record(self, row: Mapping[str, Any], trial_id: str, epoch: int) -> dict[str, Any]:
        record: dict[str, Any] = {"trial_id": trial_id, "epoch": epoch}
        extra: dict[str, Any] = {}
        for key, raw in row.items():
            if key in record:
                continue
            if key in EPOCH_SCHEMA.names and key != "extra":
                value = _coerce(raw, EPOCH_SCHEMA.field(key).type)
                if value is not _REJECTED:
                    record[key] = value
                    continue
                self._warn_type_once(key, raw)
            value = _plain(raw)
            if value is not _REJECTED and value is not None:
                extra[key] = _json_scalar(value)
        record["extra"] = json.dumps(extra, sort_keys=True) if extra else None
        return record

    def _warn_type_once(self, key: str, raw: Any) -> None:
        if key not in self._warned_columns:
            self._warned_columns.add(key)
            expected = EPOCH_SCHEMA.field(key).type
            warnings.warn(
                f"epochs column {key!r} expects {expected}, got {raw!r}; kept in 'extra'",
                stacklevel=4,
            )

    def flush(self) -> Path | None:
        """Write the buffered rows as one new part file and return its path (``None`` if empty).

        If the write fails the rows stay buffered and the error propagates.
        """
        self._last_flush = self._clock()
        if not self._pending:
            return None
        table = pa.Table.from_pylist(self._pending, schema=EPOCH_SCHEMA)
        path = self.directory / f"part-{self._next_index:06d}-{uuid.uuid4().hex[:8]}.parquet"
        write_table_atomic(table, path)
        self._next_index += 1
        self._pending = []
        return path

    def maybe_flush(self) -> Path | None:
        """:meth:`flush` when ``flush_interval_s`` has passed since the last one."""
        if self._clock() - self._last_flush >= self._flush_interval_s:
            return self.flush()
        return None

    def close(self) -> None:
        """Flush what is buffered."""
        self.flush()

    def __enter__(self) -> EpochPartWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- trials table ---------------------------------------------------------------------------


class TrialsTableWriter:
    """One summary row per trial, rewritten atomically to ``<experiment_dir>/trials.parquet``.

    Rows already in the file are loaded at construction, so a resumed search keeps the trials of
    the earlier run. Columns: ``trial_id``, ``status``, the hyperparameter columns in name order
    (typed from their values: bool, int64, float64, else string with non-strings as JSON), then
    :data:`TRIAL_SUMMARY_SCHEMA`.
    """

    def __init__(self, experiment_dir: str | os.PathLike[str]) -> None:
        self.path = Path(experiment_dir) / TRIALS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, dict[str, Any]] = {}
        self._dirty = False
        table = read_parquet_file(self.path) if self.path.is_file() else None
        for row in table.to_pylist() if table is not None else []:
            self._rows[row["trial_id"]] = row

    def __contains__(self, trial_id: object) -> bool:
        return trial_id in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def dirty(self) -> bool:
        """Whether rows changed since the last :meth:`write`."""
        return self._dirty

    def get(self, trial_id: str) -> dict[str, Any]:
        """A copy of the row of ``trial_id`` (empty when unknown)."""
        return dict(self._rows.get(trial_id, {}))

    def update(self, trial_id: str, values: Mapping[str, Any]) -> None:
        """Merge ``values`` into the row of ``trial_id``, creating it when new."""
        row = self._rows.setdefault(trial_id, {"trial_id": trial_id})
        for key, value in values.items():
            if key == "trial_id":
                continue
            if key not in row or row[key] != value:
                row[key] = value
                self._dirty = True

    def forget_unknown(self, known: Collection[str]) -> list[str]:
        """Drop the rows of trials outside ``known`` (Tune's trial list at the search's end);
        returns their ids.

        A driver killed after its searcher suggested a trial, or after the trial's first
        reports, but before Tune saved its experiment state, leaves the row of a trial that Tune
        does not restore: the resumed search runs its configuration again under another id. The
        first trial's epoch and prediction rows stay in their parts; the readers leave out the
        rows of trials this table does not list (:func:`listed_trials_only`).
        """
        stale = [trial_id for trial_id in self._rows if trial_id not in known]
        for trial_id in stale:
            del self._rows[trial_id]
        self._dirty = self._dirty or bool(stale)
        return stale

    def write(self) -> bool:
        """Rewrite the file when rows changed since the last write; ``True`` if it wrote."""
        if not self._dirty:
            return False
        write_table_atomic(_trials_table(self._rows.values()), self.path)
        self._dirty = False
        return True


def _trials_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    rows = list(rows)
    fixed = set(_TRIAL_LEAD_COLUMNS) | set(TRIAL_SUMMARY_SCHEMA.names)
    hyper = sorted({key for row in rows for key in row} - fixed)
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    for name in _TRIAL_LEAD_COLUMNS:
        fields.append(pa.field(name, pa.string()))
        arrays.append(pa.array([_text(row.get(name)) for row in rows], pa.string()))
    for name in hyper:
        array = _hyperparameter_array([row.get(name) for row in rows])
        fields.append(pa.field(name, array.type))
        arrays.append(array)
    for field in TRIAL_SUMMARY_SCHEMA:
        values = [_coerce(row.get(field.name), field.type) for row in rows]
        arrays.append(pa.array([None if v is _REJECTED else v for v in values], field.type))
        fields.append(field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=table_metadata("trials")))


def _hyperparameter_array(values: list[Any]) -> pa.Array:
    """One hyperparameter column, typed by the values it holds (nulls allowed)."""
    present = [v for v in (_plain(v) for v in values) if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.array([_plain(v) for v in values], pa.bool_())
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        type_ = pa.int64() if all(isinstance(v, int) for v in present) else pa.float64()
        return pa.array([_coerce(v, type_) for v in values], type_)
    return pa.array([_text(v) for v in values], pa.string())


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


# -- readers --------------------------------------------------------------------------------


def read_epochs(
    experiment_dir: str | os.PathLike[str], *, listed: Collection[str] | None = None
) -> pd.DataFrame:
    """The epochs table of ``experiment_dir``, one row per (trial_id, epoch), sorted by them.

    Reads completed part files only; an unreadable part is skipped with a warning naming it. The
    JSON ``extra`` column is expanded into one column per key. An empty table keeps the columns.
    Rows of trials the trials table does not list are left out (:func:`listed_trials_only`;
    ``listed``: the trial ids of that table, when the caller has read it already).
    """
    directory = Path(experiment_dir) / EPOCHS_DIR
    tables = [t for t in map(read_parquet_file, part_files(directory)) if t is not None]
    if not tables:
        frame = EPOCH_SCHEMA.empty_table().to_pandas()
    else:
        frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    frame = _expand_extra(listed_trials_only(frame, experiment_dir, listed))
    return frame.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)


def listed_trials_only(
    frame: pd.DataFrame,
    experiment_dir: str | os.PathLike[str],
    listed: Collection[str] | None = None,
) -> pd.DataFrame:
    """The rows of ``frame`` whose trial the trials table lists (all rows without the table);
    ``listed`` gives the table's trial ids instead of reading it again.

    A driver killed after a trial's first reports but before Ray Tune saved its experiment state
    leaves rows of a trial that Tune does not restore: the resume starts that configuration again
    under a new id, and the trials table, written from Tune's trial list, never lists the first.
    """
    if frame.empty:
        return frame
    if listed is None:
        if not (Path(experiment_dir) / TRIALS_FILE).is_file():
            return frame
        listed = list(read_trials(experiment_dir)["trial_id"])
    if not listed:
        return frame
    return frame[frame["trial_id"].isin(set(listed))]


def _expand_extra(frame: pd.DataFrame) -> pd.DataFrame:
    if "extra" not in frame.columns:
        return frame
    parsed = [json.loads(text) if isinstance(text, str) else {} for text in frame.pop("extra")]
    if not any(parsed):
        return frame
    extra = pd.DataFrame(parsed, index=frame.index)
    # A value that did not fit its typed column went to extra under the same name.
    extra = extra.rename(columns={c: f"extra.{c}" for c in extra.columns if c in frame.columns})
    return frame.join(extra)


def read_trials(experiment_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The trials table of ``experiment_dir``, one row per trial.

    A missing file gives an empty table with the fixed columns; an unreadable one does too, after a
    warning naming it.
    """
    path = Path(experiment_dir) / TRIALS_FILE
    table = read_parquet_file(path) if path.is_file() else None
    if table is None:
        table = _trials_table([])
    return table.to_pandas()


def read_exploits(experiment_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """``exploits.parquet`` of a population search (empty, with its key columns, for others)."""
    path = Path(experiment_dir) / EXPLOITS_FILE
    if not path.is_file():
        return pd.DataFrame(
            {"trial_id": [], "donor_id": [], "epoch": [], "generation": [], "time": []}
        )
    return pd.read_parquet(path)
