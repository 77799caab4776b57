"""Checkpoints of a training run that cost about nothing per epoch, at GPU pace.

At a few hundred milliseconds per epoch (Fig. 10's configuration on an H100), writing the full
state every epoch would be most of a trial's wall time. So:

* **Periodic.** The full resume state is written every ``checkpoint_every`` epochs, at the end
  of every stage and at the end of the run (:class:`CheckpointPolicy`). ``auto`` measures the
  epoch, the blocking snapshot and the write, and spaces checkpoints so that both together cost
  at most :data:`AUTO_SHARE` of the training time (:func:`auto_every`). The engine is exact, so a
  restart from an older checkpoint replays the lost epochs to the same metrics (on the CPU).
* **Off the training thread.** The training loop only copies the state into host buffers
  (pinned and reused on CUDA, the copy queued on the training stream: nothing waits for it); a
  background thread waits for the copy, serialises and writes it atomically. At most one write
  is in flight: under ``auto``, once a state is complete on disk, a checkpoint that falls due
  while the previous write still runs moves to the next epoch (a slow disk never stalls the
  loop); the first write, a fixed ``checkpoint_every``, a stage end and the end of the run wait
  for it. A failed write is raised in the training loop at
  its next checkpoint or at the end of the run, never lost.
* **Branch states.** A trial that other trials of a grid branch from
  (:func:`tuner.spaces.plan_sharing`)
  also writes, before it reports the epoch, the complete state after that epoch with its best
  weights and the rows it reported so far: ``branch-eNNNNN.pt``, never pruned while the search
  runs.
* **Only what training changes.** The resume state holds the entries of the current stage
  (:mod:`tuner.training.checkpoints.contents`) and no best weights; the best weights are a separate,
  weights-only file written when they changed since the last checkpoint. At the end of the run,
  ``best.pt`` holds the complete weights of the last stage's best epoch, frozen entries included,
  which any consumer (stage chaining, prerequisites, evaluation) loads on its own.

* **In a bucket.** A search with ``--storage s3://...`` gives each run a folder in the node's
  scratch folder and its copy in the bucket (:attr:`CheckpointFolder.remote`): the writer thread
  uploads each file it wrote before the checkpoint counts as complete (so Ray Tune never hears of
  a state that is not in the bucket), pruning deletes there too, and a file this node does not
  have is downloaded when a restore, a branch or an exploit asks for it
  (:meth:`CheckpointFolder.fetch`).

:class:`RunCheckpoints` ties this together for one run; its files live in one folder
(:class:`CheckpointFolder`): ``state-eNNNNN.pt`` (resume states, the newest
:data:`KEEP_STATES` kept) and ``best-eNNNNN.pt`` (best weights as of epoch NNNNN) for Ray Tune
trials, or a single ``latest.pt`` for ``egotune train``, and ``best.pt``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tuner.atomic import write_json_atomic
from tuner.storage import Bucket, is_uri, scratch_dir
from tuner.training.checkpoints.contents import best_weights_checkpoint, host_copy, tensor_bytes
from tuner.training.checkpoints.files import CheckpointError, load_checkpoint, save_checkpoint
from tuner.training.checkpoints.policy import CheckpointPolicy

__all__ = [
    "CHECKPOINTS_DIR",
    "FINAL_BEST",
    "KEEP_STATES",
    "PINNED_PREFIX",
    "POINTER_FILE",
    "CheckpointFolder",
    "HostSnapshot",
    "RunCheckpoints",
    "SavedCheckpoint",
    "checkpoint_pointer",
    "pin_donor_files",
    "read_pointer",
    "resume_run",
]

CHECKPOINTS_DIR = "checkpoints"
"""Folder of the trials' checkpoint files, in the experiment folder."""
POINTER_FILE = "pointer.json"
"""What a Ray Tune checkpoint of a trial holds: the names of its files (``SavedCheckpoint``)."""
KEEP_STATES = 3
"""Resume states kept per trial: Ray Tune's experiment snapshot may still name an older one."""
FINAL_BEST = "best.pt"
_STATE = re.compile(r"state-e(\d{5,})\.pt$")
_BRANCH = "branch-e{epoch:05d}.pt"
_INDEX = "index.json"
"""Resume states kept in a folder and the best file each refers to."""


class HostSnapshot:
    """Host copies of a nested state (dicts, lists, tuples of tensors and plain values).

    Buffers are kept and reused from one snapshot to the next. On CUDA they are pinned and the
    copies are queued on the current stream without waiting; :meth:`take` returns an event that
    fires when they are done, so the training loop never waits for the transfer (kernels queued
    after it cannot change the tensors before the copy has read them: same stream).
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[Any, ...], Tensor] = {}

    def take(self, state: Any) -> tuple[Any, torch.cuda.Event | None]:
        uses_cuda = [False]
        copied = self._copy(state, (), uses_cuda)
        if not uses_cuda[0]:
            return copied, None
        event = torch.cuda.Event()
        event.record()
        return copied, event

    def _copy(self, value: Any, path: tuple[Any, ...], uses_cuda: list[bool]) -> Any:
        if isinstance(value, Tensor):
            return self._copy_tensor(value.detach(), path, uses_cuda)
        if isinstance(value, dict):
            return {k: self._copy(v, (*path, k), uses_cuda) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._copy(v, (*path, i), uses_cuda) for i, v in enumerate(value))
        return value

    def _copy_tensor(self, tensor: Tensor, path: tuple[Any, ...], uses_cuda: list[bool]) -> Tensor:
        buffer = self._buffers.get(path)
        if buffer is None or buffer.shape != tensor.shape or buffer.dtype != tensor.dtype:
            pinned = tensor.is_cuda
            buffer = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=pinned)
            self._buffers[path] = buffer
        if tensor.is_cuda:
            uses_cuda[0] = True
            buffer.copy_(tensor, non_blocking=True)
        else:
            buffer.copy_(tensor)
        return buffer


class CheckpointFolder:
    """The checkpoint files of one run (see the module docstring for the layout)."""

    def __init__(
        self, folder: str | Path, *, versioned: bool = True, remote: Bucket | None = None
    ) -> None:
        self.folder = Path(folder)
        self.versioned = versioned
        self.remote = remote
        """The run's folder in a bucket: every file written here is uploaded there, and a file
        missing here is downloaded from there (:meth:`fetch`)."""

    @classmethod
    def of(cls, store: str | Path, trial_id: str) -> CheckpointFolder:
        """Trial ``trial_id``'s folder in the search's checkpoint store: a local folder, or a
        bucket URI worked on through this node's scratch folder."""
        if is_uri(store):
            uri = str(store)
            return cls(scratch_dir(uri) / trial_id, remote=Bucket(uri).child(trial_id))
        return cls(Path(store) / trial_id)

    def sibling(self, trial_id: str) -> CheckpointFolder:
        """Trial ``trial_id``'s folder in the same store."""
        remote = None if self.remote is None else self.remote.sibling(trial_id)
        return CheckpointFolder(self.folder.parent / trial_id, remote=remote)

    def fetch(self, name: str) -> Path:
        """The local path of file ``name``, downloaded from the bucket first when it is only
        there (the path of a missing file when it is nowhere)."""
        path = self.path(name)
        if self.remote is not None and not path.is_file():
            self.remote.download(name, path)
        return path

    def has(self, name: str) -> bool:
        """File ``name`` is here or in the bucket (nothing is downloaded)."""
        if self.path(name).is_file():
            return True
        return self.remote is not None and self.remote.exists(name)

    def publish(self, *names: str | None) -> None:
        """Upload the named local files to the bucket (nothing without one)."""
        if self.remote is not None:
            for name in filter(None, names):
                self.remote.upload(self.path(name), name)

    def state_name(self, epoch: int) -> str:
        return f"state-e{epoch:05d}.pt" if self.versioned else "latest.pt"

    @staticmethod
    def best_name(epoch: int) -> str:
        return f"best-e{epoch:05d}.pt"

    def path(self, name: str) -> Path:
        return self.folder / name

    def branch_path(self, epoch: int) -> Path:
        """The branch state after ``epoch`` (see the module docstring)."""
        return self.path(_BRANCH.format(epoch=epoch))

    def record(self, state: str, best: str | None, keep: int = KEEP_STATES) -> None:
        """Note that ``state`` (referring to ``best``) is complete, then delete all but the
        newest ``keep`` resume states and the best files none of them (nor the newest) names."""
        if not self.versioned:
            return
        index = self._index()
        index[state] = best
        kept = sorted(index, key=_epoch_of)[-keep:]
        pruned = set(index) - set(kept)
        index = {name: index[name] for name in kept}
        write_json_atomic(self.path(_INDEX), index)
        self.publish(_INDEX)  # the bucket's index names only what is there before files go
        wanted = set(index.values())
        bests = sorted(p.name for p in self.folder.glob("best-e*.pt"))
        pruned.update(name for name in bests[:-1] if name not in wanted)
        for name in pruned:
            self.path(name).unlink(missing_ok=True)
            if self.remote is not None:
                self.remote.delete(name)

    def newest_state(self, up_to: int | None = None) -> Path | None:
        """The newest complete resume state in the folder (after epoch ``up_to`` at the
        latest, when given), or ``None``."""
        if not self.versioned:
            latest = self.path(self.state_name(0))
            return latest if latest.is_file() and up_to is None else None

        def wanted(name: str) -> bool:
            return up_to is None or 0 <= _epoch_of(name) <= up_to

        names = [n for n in self._index() if wanted(n)]
        if not names and self.folder.is_dir():
            names = [p.name for p in self.folder.glob("state-e*.pt") if wanted(p.name)]
        for name in sorted(names, key=_epoch_of, reverse=True):
            if self.fetch(name).is_file():
                return self.path(name)
        return None

    def _index(self) -> dict[str, str | None]:
        try:
            index = json.loads(self.fetch(_INDEX).read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): v for k, v in index.items()} if isinstance(index, dict) else {}


def _epoch_of(name: str) -> int:
    match = _STATE.match(name)
    return int(match.group(1)) if match else -1


@dataclass(frozen=True)
class SavedCheckpoint:
    """A checkpoint whose files are complete on disk."""

    epoch: int
    state: str
    """File name of the resume state in the run's folder."""
    best: str | None
    """File name of the best weights the state refers to (``None`` before any best)."""
    final_best: str | None
    """``best.pt`` when this is the end of the run."""
    bytes: int
    """Bytes written for it."""
    write_s: float
    """Seconds the write took (off the training thread)."""

    def pointer(self) -> dict[str, Any]:
        """What a Ray Tune checkpoint records of it (``pointer.json``)."""
        return {
            "format": "egotune-pointer-v1",
            "epoch": self.epoch,
            "state": self.state,
            "best": self.best,
            "final_best": self.final_best,
        }


class _Writer:
    """One background thread at a time writing a checkpoint; its error is kept for the caller."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._done: list[SavedCheckpoint] = []

    def start(self, job: Callable[[], SavedCheckpoint]) -> None:
        def run() -> None:
            try:
                saved = job()
            except BaseException as exc:  # kept and raised in the training thread
                self._error = exc
                return
            with self._lock:
                self._done.append(saved)

        self._thread = threading.Thread(target=run, name="egotune-checkpoint", daemon=True)
        self._thread.start()

    def busy(self) -> bool:
        """Whether a write is in flight."""
        return self._thread is not None and self._thread.is_alive()

    def last(self) -> SavedCheckpoint | None:
        """The newest completed write not yet taken."""
        with self._lock:
            return self._done[-1] if self._done else None

    def take(self) -> list[SavedCheckpoint]:
        """The completed writes not yet taken, oldest first."""
        with self._lock:
            done, self._done = self._done, []
        return done

    def wait(self) -> float:
        """Wait for the write in flight; returns the seconds waited."""
        if self._thread is None:
            return 0.0
        start = time.perf_counter()
        self._thread.join()
        self._thread = None
        return time.perf_counter() - start

    def raise_if_failed(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise CheckpointError(f"writing a checkpoint failed: {error}") from error


def read_pointer(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``pointer.json`` of a Tune checkpoint folder, or ``None`` when it has none."""
    path = Path(folder) / POINTER_FILE
    if not path.is_file():
        return None
    pointer: dict[str, Any] = json.loads(path.read_text())
    return pointer


def checkpoint_pointer(checkpoint: Any) -> dict[str, Any] | None:
    """The ``pointer.json`` of a Ray Tune checkpoint (on local disk or in a bucket: read through
    the checkpoint's own filesystem), or ``None`` when it has none."""
    path = os.path.join(checkpoint.path, POINTER_FILE)
    try:
        with checkpoint.filesystem.open_input_stream(path) as stream:
            pointer = json.loads(stream.read())
    except (OSError, ValueError):
        return None
    return pointer if isinstance(pointer, dict) else None


def resume_run(trainer: Any, checkpoints: RunCheckpoints, state_path: Path) -> None:
    """Load the resume state ``state_path`` (and the best weights it refers to) into the trainer
    that ``checkpoints`` writes for."""
    state = load_checkpoint(state_path)
    best_file = state.get("best_file")
    best = load_checkpoint(checkpoints.folder.fetch(best_file))["model"] if best_file else None
    trainer.load_state_dict(state, best_model=best)
    checkpoints.restore_best_file(best_file)
    checkpoints.history[:] = state.get("history", [])
    checkpoints.policy.taken(trainer.global_epoch, snapshot_s=0.0)


class RunCheckpoints:
    """Checkpoints of one :class:`tuner.training.engine.Trainer` run into one folder.

    Call :meth:`after_epoch` after every epoch the trainer yields; it snapshots and starts a
    write when the policy says so, and returns the seconds the loop was blocked and the bytes the
    write will persist. :attr:`completed` lists writes that finished since it was last read.
    :attr:`history` holds the rows the run reported (metrics without predictions); every state
    carries it, so that a branch state holds the rows of all its epochs.
    """

    def __init__(self, trainer: Any, folder: CheckpointFolder, policy: CheckpointPolicy) -> None:
        self.trainer = trainer
        self.folder = folder
        self.policy = policy
        self._snapshot = HostSnapshot()
        self._best_snapshot = HostSnapshot()
        self._writer = _Writer()
        self._best_epoch_written: int | None = None
        self._best_file: str | None = None
        self._resumable = False
        """A complete state is on disk, so ``auto`` may move a checkpoint instead of waiting."""
        self.history: list[dict[str, Any]] = []

    def restore_best_file(self, name: str | None) -> None:
        """After a resume: the best file the loaded state refers to is already on disk."""
        self._best_file = name
        self._best_epoch_written = self.trainer.best["epoch"] if name else None
        self._resumable = self.policy.auto

    def after_epoch(
        self, epoch_s: float, *, stage_end: bool, last: bool, now: bool = False
    ) -> tuple[float, int]:
        """Checkpoint after the epoch the trainer just finished, if due; ``now``: in any case,
        and complete before this returns (a population search exploits that very state)."""
        self._writer.raise_if_failed()
        self._collect(epoch_s)
        epoch = self.trainer.global_epoch
        if not now and not self.policy.due(epoch, stage_end=stage_end, last=last):
            return 0.0, 0
        if self._resumable and self._writer.busy() and not (now or stage_end or last):
            return 0.0, 0  # the previous write still runs: the next epoch is due in its place
        start = time.perf_counter()
        waited = self._writer.wait()  # at most one write in flight
        self._writer.raise_if_failed()
        self._collect(epoch_s)
        job, size = self._prepare(epoch, final=last)
        blocked = time.perf_counter() - start
        self.policy.taken(epoch, snapshot_s=blocked - waited)
        self._writer.start(job)
        if last or now:
            blocked += self._writer.wait()
            self._writer.raise_if_failed()
            self._collect(epoch_s)
        return blocked, size

    def save_branch(self) -> tuple[float, int]:
        """Write the branch state after the trainer's current epoch now (blocking: a branch may
        start from it as soon as the epoch is reported); returns seconds and bytes."""
        start = time.perf_counter()
        state = {**self.trainer.state_dict(), "history": [dict(row) for row in self.history]}
        path = self.folder.branch_path(self.trainer.global_epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        size = save_checkpoint(state, path).stat().st_size
        self.folder.publish(path.name)
        return time.perf_counter() - start, size

    @property
    def completed(self) -> list[SavedCheckpoint]:
        """Writes finished since the last read, oldest first."""
        return self._writer.take()

    def close(self, *, wait: bool) -> None:
        """End of the run: wait for the write in flight (``wait``), raising its error."""
        if wait:
            self._writer.wait()
            self._writer.raise_if_failed()

    def _collect(self, epoch_s: float) -> None:
        last = self._writer.last()
        self.policy.observe(epoch_s=epoch_s, write_s=last.write_s if last else None)
        self._resumable = self._resumable or (last is not None and self.policy.auto)

    def _prepare(self, epoch: int, *, final: bool) -> tuple[Callable[[], SavedCheckpoint], int]:
        trainer = self.trainer
        state, ready = self._snapshot.take(trainer.resume_state())
        best_epoch = int(trainer.best["epoch"])
        best, best_ready = None, None
        if trainer.best_model is not None and best_epoch != self._best_epoch_written:
            best, best_ready = self._best_snapshot.take(trainer.best_model)
            self._best_file = self.folder.best_name(best_epoch) if self.folder.versioned else None
            self._best_epoch_written = best_epoch
        state["best_file"] = self._best_file
        state["history"] = [dict(row) for row in self.history]  # as they are now
        full = host_copy(trainer.model.state_dict()) if final else None
        size = tensor_bytes(state) + tensor_bytes(best) + tensor_bytes(full)
        best_name, folder = self._best_file, self.folder

        def write() -> SavedCheckpoint:
            start = time.perf_counter()
            for event in (ready, best_ready):
                if event is not None:
                    event.synchronize()  # the host copies are complete; no kernel runs here
            folder.folder.mkdir(parents=True, exist_ok=True)
            if best is not None and best_name is not None:
                save_checkpoint({"epoch": best_epoch, "model": best}, folder.path(best_name))
            name = folder.state_name(epoch)
            written = save_checkpoint(state, folder.path(name)).stat().st_size
            final_name = None
            if full is not None:
                complete = best_weights_checkpoint({**state, "best_model": _best(best)}, full)
                written += save_checkpoint(complete, folder.path(FINAL_BEST)).stat().st_size
                final_name = FINAL_BEST
            folder.publish(best_name if best is not None else None, name, final_name)
            folder.record(name, best_name)
            return SavedCheckpoint(
                epoch, name, best_name, final_name, written, time.perf_counter() - start
            )

        def _best(snapshot: dict[str, Tensor] | None) -> dict[str, Tensor] | None:
            if snapshot is not None:
                return snapshot
            if best_name is None:
                return None
            saved: dict[str, Tensor] = load_checkpoint(folder.fetch(best_name))["model"]
            return saved

        return write, size


# -- a population search's exploits: a donor's files pinned in the recipient's folder ---------

PINNED_PREFIX = "from-"
"""``<trial folder>/from-<donor>-<file>``: a donor's file pinned for an exploit."""


def pin_donor_files(
    store: str | Path, trial_id: str, donor_id: str, pointer: dict[str, Any]
) -> bool:
    """Link the donor's state (and the best weights it names) into the recipient's folder (copy
    them there, in a bucket); ``False`` when the state is not on disk."""
    names = [pointer.get("state"), pointer.get("best")]
    if is_uri(store):
        return _pin_in_bucket(Bucket(str(store)), trial_id, donor_id, names)
    store = Path(store)
    source = store / donor_id
    if not names[0] or not (source / str(names[0])).is_file():
        return False
    target = store / trial_id
    target.mkdir(parents=True, exist_ok=True)
    for name in filter(None, names):
        pinned = target / f"{PINNED_PREFIX}{donor_id}-{name}"
        if pinned.exists() or not (source / name).is_file():
            continue
        try:
            os.link(source / name, pinned)
        except OSError:
            shutil.copy2(source / name, pinned)
    return True


def _pin_in_bucket(bucket: Bucket, trial_id: str, donor_id: str, names: list[Any]) -> bool:
    if not names[0] or not bucket.exists(f"{donor_id}/{names[0]}"):
        return False
    for name in filter(None, names):
        pinned = f"{trial_id}/{PINNED_PREFIX}{donor_id}-{name}"
        if not bucket.exists(pinned) and bucket.exists(f"{donor_id}/{name}"):
            bucket.copy(f"{donor_id}/{name}", pinned)
    return True
