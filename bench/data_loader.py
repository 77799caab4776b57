"""Clips per second of the data loaders, and the data-wait share of a training step.

Usage: ``egotune bench data_loader [--frames 16] [--crop 224] [--clips 32] [--classes 4]
[--videos-per-class 1] [--size 455x256] [--data ROOT] [--cache DIR] [--no-step] [--json]
[--no-record]`` (or ``.venv/bin/python bench/data_loader.py``)

On a synthetic GTEA61 at the real frame size (455x256 PNG), RGB clips of T frames cropped to
224 px for training, made one after another in this process on one thread (what one DataLoader
worker does), by:

* ``reference``: the original Ego-RNN way: per frame one PIL open and PIL transforms (Scale(256),
  RandomHorizontalFlip, MultiScaleCornerCrop, ToTensor, Normalize), then a stack;
* ``png``: egotune's ``ClipDataset`` decoding PNG files (tensor transforms on the whole clip);
* ``store``: the same dataset reading the decoded-frame store (``FrameStore``);
* ``store_deferred``: the store with ``deferred=True``, as training on CUDA runs it: the worker's
  share (``loader``) and, for completeness, the batch finish done on this CPU too (``with_finish``;
  on a GPU that part costs the worker nothing).

All use the same random crops and flips. The headline ratio is store / reference. Then, unless
``--no-step``, one training epoch of a small model (Ego-RNN on ResNet-18, 128 ConvLSTM channels,
stage 2, batch 4, same T and crop) with the store and with PNG decoding, loading in the training
process (``num_workers: 0``) so that the epoch's ``data_wait_frac`` is the loading cost itself
rather than what prefetching workers leave of it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import default_collate

# run as a script from any folder: the repository root holds the packages
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.record import record
from data_pipeline import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipDataset,
    ClipTransform,
    CropParams,
    DatasetIndex,
    FrameStore,
    corner_box,
    default_scale_size,
    discover,
    rgb_frame_numbers,
    synthesize,
)
from tuner.training.config import TrainConfig
from tuner.training.engine import Trainer


class ReferenceClips:
    """RGB clips loaded as the original Ego-RNN code loads them: PIL per frame.

    The crop and flip of item ``index`` are drawn as :class:`ClipDataset` draws them, so both
    loaders do the same work; everything else follows the original transforms (PIL bilinear
    resizes, ``ToTensor``, ``Normalize`` per frame).
    """

    def __init__(self, index: DatasetIndex, frames: int, crop_size: int) -> None:
        self.videos = index.videos
        self.frames = frames
        self.crop_size = crop_size
        self.scale_size = default_scale_size(crop_size)
        self.draw = ClipTransform(train=True, crop_size=crop_size).draw
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.videos)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> torch.Tensor:
        params = self.draw(np.random.default_rng([0, self.epoch, index]))
        assert params is not None
        video = self.videos[index]
        clip = []
        for number in rgb_frame_numbers(video.n_frames, self.frames):
            image = Image.open(video.rgb[number - 1]).convert("RGB")
            clip.append(self._transform(image, params))
        return torch.stack(clip)  # (T, 3, S, S)

    def _transform(self, image: Image.Image, params: CropParams) -> torch.Tensor:
        width, height = image.size
        if min(width, height) != self.scale_size:  # Scale(256)
            ratio = self.scale_size / min(width, height)
            size = (round(width * ratio), round(height * ratio))
            image = image.resize(size, Image.Resampling.BILINEAR)
        if params.flip:  # RandomHorizontalFlip
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        top, left, side = corner_box(image.size[1], image.size[0], params)
        image = image.crop((left, top, left + side, top + side))  # MultiScaleCornerCrop
        image = image.resize((self.crop_size, self.crop_size), Image.Resampling.BILINEAR)
        return TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)


def clips_per_second(make: Callable[[int], Any], size: int, clips: int, epochs: Any) -> float:
    """Rate of ``make(index)`` over ``clips`` calls cycling through the items, one epoch per
    cycle (``epochs(e)`` selects it), after a one-clip warm-up."""
    epochs(99)
    make(0)
    start = time.perf_counter()
    for k in range(clips):
        if k % size == 0:
            epochs(k // size)
        make(k % size)
    return clips / (time.perf_counter() - start)


def deferred_rates(dataset: ClipDataset, clips: int, batch: int = 4) -> tuple[float, float]:
    """Clips/s of the worker's share of deferred items, and with the batch finish on the CPU."""
    finish = dataset.finisher()
    loading = finishing = 0.0
    done = 0
    while done < clips:
        dataset.set_epoch(done // len(dataset))
        start = time.perf_counter()
        items = [dataset[(done + i) % len(dataset)] for i in range(batch)]
        collated = default_collate(items)
        middle = time.perf_counter()
        finish(collated)
        finishing += time.perf_counter() - middle
        loading += middle - start
        done += batch
    return done / loading, done / (loading + finishing)


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread, as in a DataLoader worker, so every loader gets one core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def measure_loaders(
    index: DatasetIndex, store: FrameStore, frames: int, crop: int, clips: int
) -> dict[str, Any]:
    options: dict[str, Any] = {"frames": frames, "crop_size": crop, "train": True}
    png = ClipDataset(index.videos, index.classes, **options)
    stored = ClipDataset(index.videos, index.classes, decoder=store, **options)
    deferred = ClipDataset(index.videos, index.classes, decoder=store, deferred=True, **options)
    reference = ReferenceClips(index, frames, crop)
    size = len(png)
    with one_thread():
        rates = {
            "reference": clips_per_second(reference.__getitem__, size, clips, reference.set_epoch),
            "png": clips_per_second(png.__getitem__, size, clips, png.set_epoch),
            "store": clips_per_second(stored.__getitem__, size, clips, stored.set_epoch),
        }
        loader, with_finish = deferred_rates(deferred, clips)
    rates["store_deferred_loader"], rates["store_deferred_with_finish"] = loader, with_finish
    same = all(torch.equal(png[i]["rgb"], stored[i]["rgb"]) for i in range(min(size, 4)))
    return {"clips_per_s": rates, "store_equals_png": same}


def measure_step(root: Path, cache: Path, frames: int, crop: int) -> dict[str, dict[str, float]]:
    """One epoch of a small model with and without the store: clips/s and data-wait share."""
    base = {
        "model": "ego_rnn",
        "stage": "2",
        "backbone": "resnet18",
        "weights": "none",
        "bn_calibration": "off",
        "mem_size": 128,
        "frames": frames,
        "crop_size": crop,
        "batch_size": 4,
        "epochs": 1,
        "num_workers": 0,
        "device": "cpu",
        "frame_store_dir": str(cache),
    }
    results = {}
    for mode in ("on", "off"):
        config = TrainConfig.from_dict({**base, "frame_store": mode})
        (epoch,) = Trainer(config, discover(root)).run()
        results["store" if mode == "on" else "png"] = {
            "clips_per_s": epoch.clips_per_s,
            "data_wait_frac": epoch.data_wait_frac,
        }
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16, help="frames T per clip")
    parser.add_argument("--crop", type=int, default=224, help="training crop side in pixels")
    parser.add_argument("--clips", type=int, default=32, help="clips timed per loader")
    parser.add_argument("--classes", type=int, default=4, help="synthetic classes (3-61)")
    parser.add_argument("--videos-per-class", type=int, default=1, help="per class and user")
    parser.add_argument("--size", default="455x256", help="synthetic frame size WxH")
    parser.add_argument("--data", type=Path, help="use this dataset instead of a synthetic one")
    parser.add_argument("--cache", type=Path, help="frame store folder (default: a temporary one)")
    parser.add_argument("--no-step", action="store_true", help="skip the training-epoch part")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--no-record", action="store_true", help="do not write bench/results or bench/RESULTS.md"
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    if args.data is None:
        width, height = (int(v) for v in args.size.lower().split("x"))
        args.data = synthesize(
            scratch / "synthetic",
            classes=args.classes,
            videos_per_class=args.videos_per_class,
            size=(width, height),
            seed=0,
        ).root
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the synthetic dataset's deliberate defects
        index = discover(args.data)
    cache = args.cache or scratch / "frames"
    start = time.perf_counter()
    store = FrameStore.open(index, cache, scale_size=default_scale_size(args.crop))
    build_s = time.perf_counter() - start
    result: dict[str, Any] = {
        "videos": len(index.videos),
        "frames_per_clip": args.frames,
        "store_open_s": build_s,
        "store_bytes": sum(p.stat().st_size for p in store.directory.glob("*.u8")),
        "crop": args.crop,
        **measure_loaders(index, store, args.frames, args.crop, args.clips),
    }
    if not args.no_step:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result["step"] = measure_step(args.data, cache, args.frames, args.crop)
    return result


def figures(result: dict[str, Any]) -> dict[str, Any]:
    rates = result["clips_per_s"]
    shown: dict[str, Any] = {f"{k}_clips_per_s": round(v, 2) for k, v in rates.items()}
    shown["store_vs_reference"] = round(rates["store"] / rates["reference"], 2)
    shown["png_vs_reference"] = round(rates["png"] / rates["reference"], 2)
    for mode, values in result.get("step", {}).items():
        shown[f"data_wait_{mode}"] = round(values["data_wait_frac"], 4)
    return shown


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="egotune-bench-data-"))
    try:
        result = run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    shown = figures(result)
    if not args.no_record:
        record("data_loader", shown, details=result)
    if args.json:
        print(json.dumps({"figures": shown, **result}, indent=2, default=str))
    else:
        for key, value in shown.items():
            print(f"{key:32s} {value}")
    return 0 if result["store_equals_png"] else 1


if __name__ == "__main__":
    sys.exit(main())
