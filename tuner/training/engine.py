"""The training engine: any model of the report through its stages, exactly resumable, without Ray.

:class:`Trainer` owns the model, optimiser, schedule, data order and best-so-far record of one run.
``Trainer.run()`` yields one :class:`EpochRecord` per finished epoch; between two records the
trainer's :meth:`Trainer.state_dict` is a complete, consistent checkpoint, and a new trainer that
loads it continues with exactly the metrics of an uninterrupted run on the CPU:

* the data order of epoch e is a permutation drawn from ``(seed, e)`` and every augmentation of
  an item from ``(seed, e, index)`` (see :class:`data_pipeline.ClipDataset`), so neither depends on
  worker processes or on what ran before;
* the torch RNG (dropout) is re-seeded from ``(seed, e)`` at each epoch start, and the torch,
  numpy and python RNG states are saved in the checkpoint as well.

Frames come from the node's decoded-frame store (``frame_store``, :class:`data_pipeline.FrameStore`)
when it can be had, which yields the same tensors as decoding the PNG files. On CUDA the clips
then leave the DataLoader as uint8 cuts and the last resize and the normalisation run on the GPU
for the whole batch (:class:`data_pipeline.BatchFinisher`).

Protocol (notes §4): Adam (eps 1e-4) or SGD (momentum 0.9); MultiStepLR stepped at the end of each
epoch (StepLR(1, gamma) for the two-stream model); validation every epoch; the best validation
accuracy of each stage selects its model, and ``stage=both`` starts stage 2 from the best
stage-1 state.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from data_pipeline import (
    ClipDataset,
    DatasetIndex,
    FrameStore,
    FrameStoreError,
    Video,
    default_scale_size,
    split_by_user,
)
from models import set_stage_mode, tap_size
from tuner.cache import cache_dir
from tuner.errors import EgotuneError
from tuner.training.checkpoints.contents import (
    best_weights_checkpoint,
    changing_keys,
    check_frozen_source,
    frozen_source,
    host_copy,
    merge_best_weights,
)
from tuner.training.checkpoints.files import CheckpointError, capture_rng_state, restore_rng_state
from tuner.training.config import (
    RUNTIME_KEYS,
    SCHEDULE_KEYS,
    StageSettings,
    TrainConfig,
    flatten_config,
)
from tuner.training.cost import ClipFlops, clip_flops, trial_flops
from tuner.training.device import DevicePlan
from tuner.training.fidelity import FidelitySchedule
from tuner.training.loading import BatchStream, emulate_loader_seed_draw
from tuner.training.optim import build_optimizer, build_scheduler
from tuner.training.recipes import Recipe, build_model, recipe_for
from tuner.training.records import TIME_FIELDS, EpochRecord, EpochTotals, video_predictions
from tuner.training.simulated_gpu import SimulatedGPU

__all__ = [
    "TIME_FIELDS",
    "EpochRecord",
    "Trainer",
    "best_weights_checkpoint",
    "frame_store_dir",
    "merge_best_weights",
    "resolve_device",
]


VAL_CACHE_BYTES = {"cuda": 2 << 30, "cpu": 512 << 20}
"""Largest validation set (its batches as they reach the model's device, before the finisher)
kept there after the first validation, per device type; a larger one is read every epoch."""


def epoch_order(seed: int, size: int, epoch: int) -> list[int]:
    """The training data order of ``epoch``: a permutation drawn from ``(seed, epoch)``, so the
    data-order state is 2 ints."""
    generator = torch.Generator().manual_seed(_mix(seed, epoch, 0x5EED))
    return torch.randperm(size, generator=generator).tolist()


def frame_store_dir(config: TrainConfig) -> Path:
    """Where the decoded-frame stores of this node live (see ``TrainConfig.frame_store_dir``)."""
    if config.frame_store_dir:
        return Path(config.frame_store_dir).expanduser()
    return cache_dir("frames")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {name} requested but no CUDA device is available")
    return torch.device(name)


class Trainer:
    """One training run of ``config`` on the videos of ``index``.

    ``plan`` overrides how the model is prepared for its device
    (:class:`tuner.training.device.DevicePlan`: memory format, autocast, compilation); by default it
    follows the configuration. ``fidelity``: the clip length and crop of the first epochs, when a
    search's rungs train them smaller (:mod:`tuner.training.fidelity`). Call :meth:`close` when
    done: the run's loader processes live until then."""

    def __init__(
        self,
        config: TrainConfig,
        index: DatasetIndex,
        *,
        plan: DevicePlan | None = None,
        fidelity: FidelitySchedule | None = None,
    ) -> None:
        self.config = config
        self.fidelity = fidelity or FidelitySchedule()
        self.data_config = self._sized(1)
        """``config`` at the size the loaders give now (that of the next epoch)."""
        self.classes = list(index.classes)
        self.device = resolve_device(config.device)
        self.recipe: Recipe = recipe_for(config.model)
        train_videos, val_videos = split_by_user(index, config.train_users, config.val_users)
        if not train_videos or not val_videos:
            raise ValueError(
                f"train_users/val_users: split {list(config.train_users)} / "
                f"{list(config.val_users)} leaves an empty side in {index.root}"
            )
        self._index = index
        self._planned_flops: float | None = None
        self._clip_flops: dict[tuple[int, int, int], ClipFlops] = {}
        self.store = self._open_store(index)
        # on CUDA, resize and normalise whole batches on the GPU (exact up to 1/255)
        self._deferred = self.store is not None and self.device.type == "cuda"
        self.train_set = self._dataset(train_videos, train=True)
        self.val_set = self._dataset(val_videos, train=False)
        self._finish = self.train_set.finisher()
        self._train_stream = self._stream(self.train_set, train=True)
        self._val_stream: BatchStream | None = self._stream(self.val_set, train=False)
        self._val_cache: list[dict[str, Tensor]] | None = None
        self._val_passes = 0
        torch.manual_seed(_mix(config.seed, 0, 0x1217))  # weight initialisation
        steps = self.total_epochs * self._train_stream.batches_per_epoch
        self.plan = plan or DevicePlan.for_config(config, self.device, planned_steps=steps)
        self.model = self.plan.prepare(build_model(config, len(self.classes)).to(self.device))
        self._simulated = SimulatedGPU.from_environment()
        if (
            self.device.type == "cpu"
            and plan is None
            and (config.precision != "fp32" or config.channels_last)
        ):
            warnings.warn(
                "precision/channels_last apply to CUDA only; the CPU runs fp32", stacklevel=2
            )
        self.stage_index = 0
        self.stage_epoch = 0
        self.global_epoch = 0
        self.best: dict[str, Any] = {"val_acc": -1.0, "epoch": 0}
        self.best_model: dict[str, Tensor] | None = None
        """Entries the current stage trains, at its best epoch (on the training device)."""
        self.frozen_source = frozen_source(config)
        self._enter_stage(self.stages[0])
        if _wants_bn_calibration(config):
            self._calibrate_batchnorm()

    # -- public API --------------------------------------------------------------------------
    @property
    def stages(self) -> tuple[int, ...]:
        return self.config.stages

    @property
    def stage(self) -> int:
        return self.stages[self.stage_index]

    @property
    def total_epochs(self) -> int:
        return self.config.total_epochs

    @property
    def finished(self) -> bool:
        last = self.stage_index == len(self.stages) - 1
        return last and self.stage_epoch >= self._settings.epochs  # type: ignore[operator]

    def run(self, max_epochs: int | None = None) -> Iterator[EpochRecord]:
        """Train the remaining epochs (at most ``max_epochs``), yielding after each one."""
        done = 0
        while not self.finished and (max_epochs is None or done < max_epochs):
            if self.stage_epoch >= self._settings.epochs:  # type: ignore[operator]
                self._advance_stage()
            yield self._run_epoch()
            done += 1

    def close(self) -> None:
        """Stop the run's loader processes (the trainer cannot train afterwards)."""
        self._train_stream.close()
        if self._val_stream is not None:
            self._val_stream.close()

    def first_training_batch(self) -> dict[str, Tensor]:
        """The first batch of the next epoch on the model's device, finished (for benchmarks
        and probes of the step)."""
        return self._to_device(next(iter(self._train_stream.epoch(self.global_epoch + 1))))

    def train_step(self, batch: dict[str, Tensor]) -> Any:
        """One optimiser step on ``batch`` (on the model's device): the recipe's losses under
        the run's precision, backward, step. Returns the step's output; nothing is recorded."""
        self.optimizer.zero_grad(set_to_none=True)
        self.plan.mark_step()
        with self.plan.autocast():
            out = self._step(batch, train=True)
        if self._simulated is None:
            out.loss.backward()
            self.optimizer.step()
        return out

    def resume_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this trainer stands, but the best weights.

        Tensors are the live ones (no copies; :func:`tuner.training.checkpoints.contents.host_copy`
        or a checkpoint snapshot copies them before training goes on). ``model`` holds only the
        entries the current stage trains; the frozen rest is rebuilt from the configuration, whose
        files ``frozen_source`` identifies."""
        live = self.model.state_dict()
        return {
            "config": self.config.to_dict(),
            "classes": self.classes,
            "stage_index": self.stage_index,
            "stage": self.stage,
            "stage_epoch": self.stage_epoch,
            "epoch": self.global_epoch,
            "model": {key: live[key] for key in self._changing},
            "frozen_source": self.frozen_source,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best": dict(self.best),
            "rng": capture_rng_state(),
            "data_order": {"seed": self.config.seed, "next_epoch": self.global_epoch + 1},
        }

    def state_dict(self) -> dict[str, Any]:
        """:meth:`resume_state` with the best weights, copied to host memory: a complete
        checkpoint in one dict."""
        return host_copy({**self.resume_state(), "best_model": self.best_model})

    def load_state_dict(
        self, state: dict[str, Any], best_model: dict[str, Tensor] | None = None
    ) -> None:
        """Continue from a :meth:`state_dict` (or a :meth:`resume_state` plus its ``best_model``
        kept apart); refuses a checkpoint of another configuration or other frozen weights."""
        _check_compatible(self.config, self.classes, state)
        check_frozen_source(state.get("frozen_source"), self.frozen_source)
        self.stage_index = int(state["stage_index"])
        self._enter_stage(self.stage)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._load_progress(state, best_model)

    def continue_from(
        self,
        state: dict[str, Any],
        best_model: dict[str, Tensor] | None = None,
        *,
        differing: Iterable[str] = SCHEDULE_KEYS,
    ) -> None:
        """Continue from the state of a run of another configuration, with this one's settings.

        The run that wrote ``state`` may differ from this one only in the keys ``differing``
        names (flat, e.g. ``lr`` or ``stage1.gamma``; a name also covers its ``stage1.``
        variant): a shared prefix of a grid (its epochs so far are this run's epochs) or a
        population-based exploit. Weights, optimiser moments, the best record, the RNG and the
        data order come from ``state``; the learning rate, weight decay and schedule are this
        configuration's own, as if it had run those epochs itself: its scheduler is stepped
        once per epoch of the stage so far and the optimiser keeps its own group settings.
        """
        allowed = {*differing, *(f"stage1.{key}" for key in differing)}
        _check_compatible(self.config, self.classes, state, allowed=allowed)
        check_frozen_source(state.get("frozen_source"), self.frozen_source)
        self.stage_index = int(state["stage_index"])
        self._enter_stage(self.stage)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # stepping before any optimiser step is the point
            for _ in range(int(state["stage_epoch"])):
                self.scheduler.step()
        saved = state["optimizer"]
        own = self.optimizer.state_dict()["param_groups"]
        if len(own) != len(saved["param_groups"]):
            raise CheckpointError("checkpoint has other optimiser groups; it is another model")
        groups = [
            {**theirs, **{k: v for k, v in mine.items() if k != "params"}}
            for mine, theirs in zip(own, saved["param_groups"], strict=True)
        ]
        self.optimizer.load_state_dict({"state": saved["state"], "param_groups": groups})
        self._load_progress(state, best_model)

    def _load_progress(self, state: dict[str, Any], best_model: dict[str, Tensor] | None) -> None:
        """Weights, epoch counters, best record and RNG of ``state`` (after its stage's
        optimiser and scheduler are in place)."""
        missing = sorted(set(self._changing) - set(state["model"]))
        if missing:
            raise CheckpointError(f"checkpoint lacks trained weights ({', '.join(missing[:3])})")
        self.model.load_state_dict(state["model"], strict=False)
        self.stage_epoch = int(state["stage_epoch"])
        self.global_epoch = int(state["epoch"])
        self.best = dict(state["best"])
        # checkpoints of earlier versions kept the stage-1 best only, under another name
        best = state.get("best_model", state.get("stage1_best_model", best_model))
        self.best_model = _to_device(best, self.device)
        restore_rng_state(state["rng"])

    def best_weights(self) -> dict[str, Tensor]:
        """Full model weights of the current stage's best epoch (the first one reaching the best
        validation accuracy), in host memory: what stage chaining and prerequisites hand on."""
        return host_copy(merge_best_weights(self.model.state_dict(), self.best_model))

    # -- stages --------------------------------------------------------------------------------
    def _enter_stage(self, stage: int) -> None:
        self._settings: StageSettings = self.config.stage_settings(stage)
        self.model.train()
        set_stage_mode(self.model, stage)
        self._changing = changing_keys(self.model)
        self.optimizer = build_optimizer(self.model, stage, self.config, self._settings)
        self.scheduler = build_scheduler(self.optimizer, self.config, self._settings)
        self.stage_epoch = 0
        self.best = {"val_acc": -1.0, "epoch": 0}
        self.best_model = None

    def _advance_stage(self) -> None:
        if self.best_model is not None:
            # the stage changed only these entries, so they restore its best epoch exactly
            self.model.load_state_dict(self.best_model, strict=False)
        self.stage_index += 1
        self._enter_stage(self.stage)

    @torch.no_grad()
    def _calibrate_batchnorm(self) -> None:
        """Set BatchNorm running statistics from one pass over the training clips.

        Randomly initialised weights come with running statistics (mean 0, variance 1) that
        describe nothing; since the stages keep BatchNorm in eval mode (as with ImageNet
        weights), the frozen backbone would then scale features arbitrarily. One pass in train
        mode with a cumulative average gives them the statistics of the data, as a pretrained
        network has. Deterministic: the pass uses epoch 0's data order and augmentation.
        """
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        self.model.eval()
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average over the whole pass
            norm.train()
        for batch in self._train_stream.epoch(0):
            self.plan.mark_step()
            with self.plan.autocast():
                self._step(self._to_device(batch), train=False)
        for norm in norms:
            norm.momentum = 0.1
        self.model.train()
        set_stage_mode(self.model, self.stage)

    # -- fidelity ------------------------------------------------------------------------------
    def _sized(self, epoch: int) -> TrainConfig:
        cfg = self.config
        frames, crop = self.fidelity.size_at(epoch, cfg.frames, cfg.crop_size)
        if (frames, crop) == (cfg.frames, cfg.crop_size):
            return cfg
        return cfg.replace(frames=frames, crop_size=crop)

    def _resize_for(self, epoch: int) -> None:
        """Rebuild the loaders when ``epoch`` trains at another clip length or crop than the
        previous one (a promotion to the next rung): weights, optimiser and schedule go on."""
        sized = self._sized(epoch)
        if (sized.frames, sized.crop_size) == (self.data_config.frames, self.data_config.crop_size):
            return
        self.close()
        crop_changed = sized.crop_size != self.data_config.crop_size
        self.data_config = sized
        if crop_changed:
            self.store = self._open_store(self._index)
            for module in self.model.modules():  # the models check the crop they were built for
                if hasattr(module, "input_size"):
                    setattr(module, "input_size", sized.crop_size)  # noqa: B010
        self.train_set = self._dataset(self.train_set.videos, train=True)
        self.val_set = self._dataset(self.val_set.videos, train=False)
        self._finish = self.train_set.finisher()
        self._train_stream = self._stream(self.train_set, train=True)
        self._val_stream = self._stream(self.val_set, train=False)
        self._val_cache = None

    @property
    def planned_flops(self) -> float:
        """Counted FLOPs of the whole run as configured (every epoch of every stage, at the
        size its epoch trains at): the cost of the configuration, whenever it is stopped."""
        if self._planned_flops is None:
            train_clips = self._train_stream.batches_per_epoch * self.config.batch_size
            if not (self.config.drop_last and len(self.train_set) > self.config.batch_size):
                train_clips = len(self.train_set)
            clips = {"train": train_clips, "val": len(self.val_set), "classes": len(self.classes)}
            self._planned_flops = trial_flops(self.config, self.fidelity, clips)
        return self._planned_flops

    def _epoch_flops(self, train_clips: float) -> float:
        """Counted FLOPs of an epoch of ``train_clips`` training clips at the current size
        (:mod:`tuner.training.cost`)."""
        per_clip = self._per_clip(self.data_config, self.stage)
        return per_clip.train * train_clips + per_clip.val * len(self.val_set)

    def _per_clip(self, sized: TrainConfig, stage: int) -> ClipFlops:
        """FLOPs per clip at ``sized``'s size: counted once per size and stage, not per epoch."""
        key = (sized.frames, sized.crop_size, stage)
        if key not in self._clip_flops:
            self._clip_flops[key] = clip_flops(sized, len(self.classes), stage)
        return self._clip_flops[key]

    # -- epochs --------------------------------------------------------------------------------
    def _run_epoch(self) -> EpochRecord:
        epoch = self.global_epoch + 1
        self._resize_for(epoch)
        torch.manual_seed(_mix(self.config.seed, epoch, 0xD80))
        lr = float(self.optimizer.param_groups[0]["lr"])
        start = time.perf_counter()
        train = self._train_epoch(epoch)
        self._synchronize()  # the clocks below measure finished work, not queued kernels
        train_seconds = time.perf_counter() - start
        val = self._evaluate()
        self._synchronize()
        val_seconds = time.perf_counter() - start - train_seconds
        with warnings.catch_warnings():
            if self._simulated is not None:  # no optimiser step was taken
                warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()
        self.global_epoch = epoch
        self.stage_epoch += 1
        if val["acc"] > self.best["val_acc"]:  # strict: the first best epoch, as the report
            self.best = {"val_acc": val["acc"], "epoch": epoch}
            live = self.model.state_dict()
            # a copy on the device: no transfer to the host until a checkpoint needs it
            self.best_model = {k: live[k].detach().clone() for k in self._changing}
        return EpochRecord(
            epoch=epoch,
            stage=self.stage,
            stage_epoch=self.stage_epoch,
            train_loss=train["loss"],
            train_acc=train["acc"],
            val_loss=val["loss"],
            val_acc=val["acc"],
            lr=lr,
            best_val_acc=float(self.best["val_acc"]),
            best_epoch=int(self.best["epoch"]),
            seconds=time.perf_counter() - start,
            clips_per_s=train["clips"] / max(train_seconds, 1e-9),
            data_wait_frac=train["wait"] / max(train_seconds, 1e-9),
            train_s=train_seconds - train["wait"],
            data_wait_s=train["wait"],
            val_s=val_seconds,
            ms_loss=train.get("ms_loss"),
            sd_loss=train.get("sd_loss"),
            frames=self.data_config.frames,
            crop_size=self.data_config.crop_size,
            flops=self._epoch_flops(train["clips"]),
            predictions=val["predictions"],
        )

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        set_stage_mode(self.model, self.stage)
        emulate_loader_seed_draw()
        totals = EpochTotals(self.recipe.aux_names)
        wait = 0.0
        tick = time.perf_counter()
        for batch in self._train_stream.epoch(epoch):
            wait += time.perf_counter() - tick
            batch = self._to_device(batch)
            out = self.train_step(batch)
            totals.add(out, batch["label"])
            tick = time.perf_counter()
        # read once per epoch: a read per step would make the host wait for every step
        if not totals.finite():
            raise FloatingPointError(
                f"non-finite training loss at epoch {epoch}; lower lr (now "
                f"{self.optimizer.param_groups[0]['lr']:g}) or check the data"
            )
        return {**totals.summary(), "wait": wait}

    @torch.no_grad()
    def _evaluate(self) -> dict[str, Any]:
        self.model.eval()
        totals = EpochTotals(())
        probabilities, labels = [], []
        for moved in self._validation_batches():
            batch = self._finish(moved)
            self.plan.mark_step()
            with self.plan.autocast():
                out = self._step(batch, train=False)
            totals.add(out, batch["label"])
            probabilities.append(out.logits.detach().float().softmax(dim=1))  # stays on device
            labels.append(batch["label"])
        self.model.train()
        set_stage_mode(self.model, self.stage)
        summary: dict[str, Any] = totals.summary()
        summary["predictions"] = video_predictions(
            torch.cat(probabilities), torch.cat(labels), self.val_set.videos, self.classes
        )
        return summary

    # -- plumbing ------------------------------------------------------------------------------
    def _step(self, batch: dict[str, Tensor], *, train: bool) -> Any:
        """The recipe's forward pass and losses (or, in a benchmark, the simulated GPU's wait:
        :mod:`tuner.training.simulated_gpu`)."""
        if self._simulated is not None:
            return self._simulated.step(
                batch, len(self.classes), train=train, crop=self.data_config.crop_size
            )
        return self.recipe.step(self.model, batch, self.config, self.stage, train)

    def _open_store(self, index: DatasetIndex) -> FrameStore | None:
        """The decoded-frame store for this run's current crop, or None to decode PNG files."""
        cfg = self.data_config
        if cfg.frame_store == "off":
            return None
        try:
            return FrameStore.open(
                index,
                frame_store_dir(cfg),
                scale_size=default_scale_size(cfg.crop_size),
                modalities=self.recipe.modalities,
            )
        except FrameStoreError as exc:
            if cfg.frame_store == "on":
                raise EgotuneError(f"frame_store: {exc}") from None
            warnings.warn(f"{exc}; decoding PNG files instead", stacklevel=3)
            return None

    def _validation_batches(self) -> Iterator[dict[str, Tensor]]:
        """The validation batches on the model's device, before the finisher.

        Validation sees the same clips every epoch (centre crops, fixed frames), so after the
        first pass its batches stay on the device when they fit in :data:`VAL_CACHE_BYTES`, and
        its loader processes end; later validations cost their forward passes alone.
        """
        if self._val_cache is not None:
            yield from self._val_cache
            return
        assert self._val_stream is not None
        budget = VAL_CACHE_BYTES.get(self.device.type, 0)
        kept: list[dict[str, Tensor]] | None = []
        size = 0
        # every pass reads the next "epoch" of the stream, which holds the same clips (nothing
        # is drawn in evaluation): the workers go on from where they are, never repositioned
        self._val_passes += 1
        for batch in self._val_stream.epoch(self._val_passes):
            moved = self._move(batch)
            if kept is not None:
                size += sum(t.numel() * t.element_size() for t in moved.values())
                if size <= budget:
                    kept.append(moved)
                else:
                    kept = None
            yield moved
        if kept is not None:
            self._val_cache = kept
            self._val_stream.close()
            self._val_stream = None

    def _stream(self, dataset: ClipDataset, *, train: bool) -> BatchStream:
        cfg = self.data_config
        seed, size = cfg.seed, len(dataset)
        return BatchStream(
            dataset,
            size=size,
            order=(lambda epoch: epoch_order(seed, size, epoch))
            if train
            else lambda _: range(size),
            batch_size=cfg.batch_size,
            drop_last=train and cfg.drop_last and size > cfg.batch_size,
            num_workers=cfg.num_workers,
            pin_memory=cfg.pin_memory and self.device.type == "cuda",
        )

    def _dataset(self, videos: list[Video], *, train: bool) -> ClipDataset:
        cfg = self.data_config
        return ClipDataset(
            videos,
            self.classes,
            modalities=self.recipe.modalities,
            frames=cfg.frames,
            train=train,
            crop_size=cfg.crop_size,
            flow_stack=cfg.flow_stack,
            flow_segments=cfg.flow_segments if self.recipe.eval_flow_segments and not train else 1,
            mmap_size=tap_size(cfg.crop_size, cfg.ms_layer),
            mmap_downsample=cfg.ms_downsample,
            mmap_target=cfg.ms_target,
            static=self.recipe.static and train,
            seed=cfg.seed,
            decoder=self.store,
            deferred=self._deferred,
        )

    def _to_device(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Copy a batch to the device and finish its deferred clips there."""
        return self._finish(self._move(batch))

    def _move(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Copy a batch to the device without waiting; the finisher's crop sides stay on the
        host, where it reads them."""
        return {
            k: v if k == "crop_side" else v.to(self.device, non_blocking=True)
            for k, v in batch.items()
        }

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _wants_bn_calibration(cfg: TrainConfig) -> bool:
    if cfg.bn_calibration != "auto":
        return cfg.bn_calibration == "on"
    starts_trained = cfg.init_checkpoint or cfg.rgb_checkpoint or cfg.flow_checkpoint
    return cfg.weights.lower() == "none" and not starts_trained


def _check_compatible(
    config: TrainConfig,
    classes: list[str],
    state: dict[str, Any],
    allowed: Collection[str] = (),
) -> None:
    saved = state.get("config")
    if not isinstance(saved, dict):
        raise CheckpointError("checkpoint has no configuration; it was not written by egotune")
    theirs, current = flatten_config(_with_defaults(saved)), flatten_config(config.to_dict())
    differing = sorted(
        key
        for key in set(theirs) | set(current)
        if key not in RUNTIME_KEYS
        and key not in allowed
        and _plain(theirs.get(key)) != _plain(current.get(key))
    )
    if differing:
        raise CheckpointError(
            f"checkpoint was written with other settings ({', '.join(differing)}); "
            "resume with the same configuration or start a new run in another folder"
        )
    if list(state.get("classes", [])) != classes:
        raise CheckpointError("checkpoint was written for another dataset (class list differs)")


def _with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved configuration with the keys added since it was written at their defaults (an
    older checkpoint lacks them but ran as their defaults do)."""
    try:
        return TrainConfig.from_dict(saved).to_dict()
    except (ValueError, TypeError):
        return saved


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _to_device(state: dict[str, Tensor] | None, device: torch.device) -> dict[str, Tensor] | None:
    if state is None:
        return None
    return {k: v.to(device, copy=True) for k, v in state.items()}


def _mix(*values: int) -> int:
    """A deterministic 63-bit seed from several integers."""
    acc = 0x9E3779B97F4A7C15
    for value in values:
        acc = (acc ^ (value + 0x9E3779B9 + (acc << 6) + (acc >> 2))) & 0xFFFFFFFFFFFFFFFF
    return acc % (2**63 - 1)
