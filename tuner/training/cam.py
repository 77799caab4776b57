"""CAM attention maps of a trial's best weights over its validation videos, as image strips.

Ego-RNN weighs each frame's conv5 features by the class activation map of the ImageNet class its
backbone ranks first (:class:`models.CamAttention`); where that map looks is what the original
Ego-RNN's users asked to see. :func:`write_cam_strips` rebuilds the trial's model from its
configuration, loads the weights of its best epoch (``best.pt``, complete, once the trial ended;
otherwise the newest best weights of its checkpoint folder on top of the rebuilt frozen weights),
runs the validation clips of chosen videos (centre crop, the frames the model sees) and writes one
PNG per video: each frame with its map over it, the video, its true and predicted class.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tuner.errors import EgotuneError
from tuner.results import Experiment

__all__ = ["write_cam_strips"]

_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def write_cam_strips(
    experiment: Experiment,
    trial_id: str,
    out: str | os.PathLike[str],
    *,
    videos: Sequence[str] | None = None,
    count: int = 4,
    data: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """One PNG per video in ``out``: the trial's CAM attention over each frame of the clip.

    ``videos`` are validation videos (``user/class/instance``); without them, ``count`` videos
    are taken, wrong and right ones alternating when the predictions table has the trial.
    """
    trainer, epoch = _trained_model(experiment, trial_id, data)
    model = trainer.model.eval()
    if getattr(model, "attention", None) is None or not hasattr(model, "encode_frames"):
        raise EgotuneError(f"trial {trial_id}: model {trainer.config.model} has no CAM attention")
    names = [v.name for v in trainer.val_set.videos]
    chosen = list(videos) if videos else _pick(experiment, trial_id, epoch, names, count)
    unknown = [v for v in chosen if v not in names]
    if unknown:
        raise EgotuneError(f"--video: not validation videos of this trial: {'; '.join(unknown)}")
    folder = Path(out).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    predictions = _predicted(experiment, trial_id, epoch)
    written = []
    for name in chosen:
        item = trainer.val_set[names.index(name)]
        frames = item["rgb"]  # (T, 3, S, S), normalised
        with torch.no_grad():
            taps = model.backbone(frames)
            _, maps = model.attention(
                taps.logits, taps.conv5, taps.conv5_nobn, model.backbone.fc.weight
            )  # (T, h, w)
        title = (
            f"{experiment.name}, trial {trial_id}, epoch {epoch}: {name}\n"
            f"true {name.split('/')[1]}, predicted {predictions.get(name, '?')}"
        )
        path = folder / f"{name.replace('/', '__').replace(',', '-')}.png"
        written.append(_draw(frames, maps, path, title))
    return written


def _trained_model(
    experiment: Experiment, trial_id: str, data: str | os.PathLike[str] | None
) -> tuple[Any, int]:
    """The trial's model (in a :class:`tuner.training.engine.Trainer`, on the CPU) with the weights
    of its
    best epoch, and that epoch."""
    from data_pipeline import discover
    from tuner.training.checkpoints.files import load_checkpoint
    from tuner.training.config import TrainConfig
    from tuner.training.engine import Trainer

    folder = experiment.path / "checkpoints" / trial_id
    complete = folder / "best.pt"
    states = sorted(folder.glob("state-e*.pt")) if folder.is_dir() else []
    if not complete.is_file() and not states:
        raise EgotuneError(f"trial {trial_id}: no checkpoint in {folder}")
    source = load_checkpoint(complete if complete.is_file() else states[-1])
    values = {**source["config"], "device": "cpu", "num_workers": 0}
    if complete.is_file():
        values["bn_calibration"] = "off"  # every BatchNorm statistic comes with the weights
    root = data or (experiment.metadata.get("space") or {}).get("overrides", {}).get("data")
    if not root:
        raise EgotuneError(f"{experiment.name}: no dataset recorded; pass --data")
    trainer = Trainer(TrainConfig.from_dict(values), discover(root))
    if complete.is_file():
        trainer.model.load_state_dict(source["model"])
        return trainer, int(source["epoch"])
    best_file = source.get("best_file")
    if not best_file:
        raise EgotuneError(f"trial {trial_id}: no best weights yet in {folder}")
    best = load_checkpoint(folder / best_file)
    trainer.load_state_dict(source)  # the stage and its trained entries, on the rebuilt model
    trainer.model.load_state_dict(best["model"], strict=False)
    return trainer, int(best["epoch"])


def _predicted(experiment: Experiment, trial_id: str, epoch: int) -> dict[str, str]:
    rows = experiment.predictions
    rows = rows[(rows["trial_id"] == trial_id) & (rows["epoch"] == epoch)]
    return dict(zip(rows["video"], rows["pred_class"], strict=True))


def _pick(
    experiment: Experiment, trial_id: str, epoch: int, names: list[str], count: int
) -> list[str]:
    rows = experiment.predictions
    rows = rows[(rows["trial_id"] == trial_id) & (rows["epoch"] == epoch)]
    if rows.empty:
        return names[:count]
    wrong = list(rows.loc[~rows["correct"], "video"])
    right = list(rows.loc[rows["correct"], "video"])
    mixed = [v for pair in zip(wrong, right, strict=False) for v in pair]
    mixed += wrong[len(right) :] + right[len(wrong) :]
    return [v for v in mixed if v in names][:count]


def _draw(frames: torch.Tensor, maps: torch.Tensor, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch.nn.functional as F

    T, _, S, _ = frames.shape
    images = (frames * _STD + _MEAN).clamp(0, 1).permute(0, 2, 3, 1).numpy()  # (T, S, S, 3)
    heat = F.interpolate(maps.unsqueeze(1), size=(S, S), mode="bilinear", align_corners=False)
    heat = heat.squeeze(1)  # (T, S, S)
    heat = (heat - heat.amin(dim=(1, 2), keepdim=True)) / (
        heat.amax(dim=(1, 2), keepdim=True) - heat.amin(dim=(1, 2), keepdim=True) + 1e-12
    )
    width = max(2.0 * T, 0.085 * max(len(line) for line in title.splitlines()) + 1.0)
    fig, axes = plt.subplots(1, T, figsize=(width, 2.9), squeeze=False, constrained_layout=True)
    for t, ax in enumerate(axes[0]):
        ax.imshow(images[t])
        ax.imshow(heat[t].numpy(), cmap="jet", alpha=0.45)
        ax.set_title(f"frame {t + 1}", fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
    return path
